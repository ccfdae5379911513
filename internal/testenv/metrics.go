package testenv

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a /metrics endpoint, parsed by Prometheus' own
// text parser, so that a malformed exposition fails the test.
type Metrics map[string]*dto.MetricFamily

// ScrapeMetrics GETs url and parses the answer.
func ScrapeMetrics(url string) (Metrics, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	m, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: parse: %w", url, err)
	}
	return m, nil
}

// Value is the sample of name whose labels match want ("k=v"; a value
// ending in * matches a prefix): a counter's, gauge's or untyped metric's
// value, a summary's or histogram's sample count.
func (m Metrics) Value(name string, want ...string) (float64, bool) {
	mf, ok := m[name]
	if !ok {
		return 0, false
	}
next:
	for _, s := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if p, ok := strings.CutSuffix(v, "*"); ok {
				if !strings.HasPrefix(have[k], p) {
					continue next
				}
			} else if have[k] != v {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Summary != nil:
			return float64(s.Summary.GetSampleCount()), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		case s.Untyped != nil:
			return s.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// Names are the metric names in the scrape, sorted.
func (m Metrics) Names() []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (m Metrics) String() string { return fmt.Sprint(m.Names()) }

// Series are the names of the series the scrape exposes: every metric's,
// and the _bucket, _sum and _count series of histograms and summaries.
func (m Metrics) Series() map[string]bool {
	out := map[string]bool{}
	for n, mf := range m {
		out[n] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[n+"_sum"], out[n+"_count"] = true, true
		}
	}
	return out
}
