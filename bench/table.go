package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0..100) of ds by nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// table is one scenario's result: rows of autopilot vs consul-template,
// ratio first, and the commands that produced them.
type table struct {
	title    string
	rows     []row
	commands []string
	notes    []string
	cols     [2]string // column names; default autopilot, consul-template
	noRatios bool      // the columns are not two tools: no ratio column
}

type row struct {
	metric  string
	ap, ct  float64
	unit    string // "ms", "MiB", "req", "%", ""
	noRatio bool
}

func (t *table) add(metric string, ap, ct float64, unit string) {
	t.rows = append(t.rows, row{metric: metric, ap: ap, ct: ct, unit: unit})
}

func (t *table) addMs(metric string, ap, ct time.Duration) {
	t.add(metric, float64(ap)/1e6, float64(ct)/1e6, "ms")
}

func (t *table) command(c string) {
	if !slices.Contains(t.commands, c) {
		t.commands = append(t.commands, c)
	}
}

func (t *table) note(format string, a ...any) { t.notes = append(t.notes, fmt.Sprintf(format, a...)) }

func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	var s string
	switch {
	case unit == "ms" && v < 10:
		s = fmt.Sprintf("%.2f", v)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) < 10:
		s = fmt.Sprintf("%.2f", v)
	default:
		s = fmt.Sprintf("%.1f", v)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

// ratio is autopilot / consul-template: below 1 means autopilot is lower.
func ratio(ap, ct float64) string {
	switch {
	case math.IsNaN(ap) || math.IsNaN(ct):
		return "n/a"
	case ct == 0 && ap == 0:
		return "1.00×"
	case ct == 0:
		return "∞"
	}
	return fmt.Sprintf("%.2f×", ap/ct)
}

// write prints the table as Markdown.
func (t *table) write(w io.Writer) {
	fmt.Fprintf(w, "\n### %s\n\n", t.title)
	a, b := "autopilot", "consul-template"
	if t.cols[0] != "" {
		a, b = t.cols[0], t.cols[1]
	}
	if t.noRatios {
		fmt.Fprintf(w, "| metric | %s | %s |\n", a, b)
		fmt.Fprintln(w, "|---|---:|---:|")
	} else {
		fmt.Fprintf(w, "| metric | %s / %s | %s | %s |\n", a, b, a, b)
		fmt.Fprintln(w, "|---|---:|---:|---:|")
	}
	for _, r := range t.rows {
		if t.noRatios {
			fmt.Fprintf(w, "| %s | %s | %s |\n", r.metric, formatValue(r.ap, r.unit), formatValue(r.ct, r.unit))
			continue
		}
		rt := ratio(r.ap, r.ct)
		if r.noRatio {
			rt = "—"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.metric, rt, formatValue(r.ap, r.unit), formatValue(r.ct, r.unit))
	}
	for _, n := range t.notes {
		fmt.Fprintf(w, "\n%s\n", n)
	}
	if len(t.commands) > 0 {
		fmt.Fprintln(w, "\nCommands:")
		fmt.Fprintln(w, "```")
		fmt.Fprintln(w, strings.Join(t.commands, "\n"))
		fmt.Fprintln(w, "```")
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
