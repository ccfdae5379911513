package dep

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// randEntry is one random instance of service web; the rng decides the
// fields that vary between answers (address, port, tags, meta, checks).
func randEntry(r *rand.Rand, i int) *api.ServiceEntry {
	node := fmt.Sprintf("node-%d", r.IntN(8)) // several instances per node
	id := fmt.Sprintf("web-%d", i)
	statuses := []string{api.HealthPassing, api.HealthPassing, api.HealthPassing, api.HealthWarning, api.HealthCritical, api.HealthMaint}
	addr := ""
	if r.IntN(3) > 0 {
		addr = fmt.Sprintf("10.0.%d.%d", r.IntN(4), r.IntN(250))
	}
	tags := []string{"b", "a", "c", "prod", "v1"}[:r.IntN(5)]
	r.Shuffle(len(tags), func(i, j int) { tags[i], tags[j] = tags[j], tags[i] })
	e := &api.ServiceEntry{
		Node: &api.Node{ID: node + "-id", Node: node, Address: "127.0.0." + fmt.Sprint(r.IntN(9)+1), Datacenter: "dc1",
			TaggedAddresses: map[string]string{"lan": "127.0.0.1"}, Meta: map[string]string{"rack": fmt.Sprint(r.IntN(3))}},
		Service: &api.AgentService{ID: id, Service: "web", Tags: slices.Clone(tags), Address: addr, Port: 8000 + r.IntN(100),
			Meta: map[string]string{"weight": fmt.Sprint(r.IntN(3))}, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
		Checks: api.HealthChecks{
			{Node: node, CheckID: "serfHealth", Name: "Serf Health Status", Status: api.HealthPassing},
			{Node: node, CheckID: "service:" + id, Name: "web", Status: statuses[r.IntN(len(statuses))], ServiceID: id, ServiceName: "web",
				Output: fmt.Sprint("out ", r.IntN(4))},
		},
	}
	return e
}

// mutate changes an answer the ways a service changes: instances added,
// removed, modified (a new check status, port, tags), the order shuffled,
// or everything replaced (an index reset after an agent restart).
func mutate(r *rand.Rand, es []*api.ServiceEntry, next *int) []*api.ServiceEntry {
	es = slices.Clone(es)
	switch op := r.IntN(10); {
	case op < 3 || len(es) == 0:
		for range r.IntN(3) + 1 {
			*next++
			es = slices.Insert(es, r.IntN(len(es)+1), randEntry(r, *next))
		}
	case op < 5:
		i := r.IntN(len(es))
		es = slices.Delete(es, i, min(len(es), i+1+r.IntN(2)))
	case op < 8:
		i := r.IntN(len(es))
		fresh := randEntry(r, 0)
		fresh.Service.ID, fresh.Checks[1].ServiceID = es[i].Service.ID, es[i].Service.ID
		es[i] = fresh
	case op < 9:
		r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	default:
		es = es[:0]
		for range r.IntN(20) {
			*next++
			es = append(es, randEntry(r, *next))
		}
	}
	return es
}

// TestDecoderMatchesFullDecode feeds randomised sequences of answers to the
// incremental decoder and checks every value against a whole decode of the
// same bytes, for each health filter, ~near (Consul's order kept) and both
// JSON forms (a server's compact, a dev agent's indented). It also checks
// that a value already handed out is never changed by a later answer (the
// decoder shares elements between answers) and that an unchanged answer
// decodes nothing.
func TestDecoderMatchesFullDecode(t *testing.T) {
	queries := []string{"web", "web|critical,warning", "web~_agent|any"}
	for _, qs := range queries {
		for _, indent := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/indent=%v", qs, indent), func(t *testing.T) {
				q, err := ParseService(qs)
				if err != nil {
					t.Fatal(err)
				}
				r := rand.New(rand.NewPCG(uint64(len(qs)), 7))
				marshal := func(es []*api.ServiceEntry) []byte {
					var b []byte
					if indent {
						b, err = json.MarshalIndent(es, "", "    ")
					} else {
						b, err = json.Marshal(es)
					}
					if err != nil {
						t.Fatal(err)
					}
					return b
				}
				d := NewDecoder(q)
				next := 0
				var es []*api.ServiceEntry
				var handed []any   // values returned so far
				var expected []any // their whole decodes
				for step := range 100 {
					if step%7 != 6 { // every 7th answer repeats the previous bytes
						es = mutate(r, es, &next)
					}
					body := marshal(es)
					got, err := d.Decode(body)
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					want, err := Decode(q, body)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("step %d: incremental decode differs from the whole decode\ngot  %s\nwant %s", step, js(got), js(want))
					}
					if step%7 == 6 && d.Decoded != 0 {
						t.Fatalf("step %d: unchanged answer decoded %d elements", step, d.Decoded)
					}
					handed, expected = append(handed, got), append(expected, want)
				}
				for i := range handed {
					if !reflect.DeepEqual(handed[i], expected[i]) {
						t.Fatalf("value %d changed after it was handed out", i)
					}
				}
			})
		}
	}
}

// TestDecoderOtherKinds: the other array kinds (keys, nodes) through the
// incremental path, and the kinds without one.
func TestDecoderOtherKinds(t *testing.T) {
	tree, _ := ParsePrefix("cfg/")
	nodes, _ := ParseDC(KindCatalogNodes, "")
	key, _ := ParseKey("cfg/a")
	services, _ := ParseDC(KindCatalogServices, "")
	r := rand.New(rand.NewPCG(1, 2))
	kvs := func() []byte {
		var ps api.KVPairs
		for i := range r.IntN(12) {
			ps = append(ps, &api.KVPair{Key: fmt.Sprintf("cfg/%c/%d", 'a'+rune(r.IntN(3)), i), Value: []byte(fmt.Sprint(r.IntN(3))), ModifyIndex: uint64(r.IntN(3))})
		}
		r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		b, _ := json.Marshal(ps)
		return b
	}
	ns := func() []byte {
		var out []*api.Node
		for i := range r.IntN(12) {
			out = append(out, &api.Node{Node: fmt.Sprintf("n%d", r.IntN(5)), Address: fmt.Sprintf("127.0.0.%d", i), Meta: map[string]string{"a": "b"}})
		}
		b, _ := json.Marshal(out)
		return b
	}
	cases := []struct {
		q    Query
		body func() []byte
	}{
		{tree, kvs},
		{nodes, ns},
		{key, func() []byte {
			return []byte(`[{"Key":"cfg/a","Value":"` + []string{"eA==", "eQ=="}[r.IntN(2)] + `"}]`)
		}},
		{services, func() []byte { return []byte(`{"web":["b","a"],"db":[]}`) }},
	}
	for _, tc := range cases {
		t.Run(tc.q.String(), func(t *testing.T) {
			d := NewDecoder(tc.q)
			for step := range 100 {
				body := tc.body()
				if step%10 == 9 {
					body = nil // a 404: nothing there
				}
				got, err := d.Decode(body)
				if err != nil {
					t.Fatal(err)
				}
				want, err := Decode(tc.q, body)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d: got %s, want %s", step, js(got), js(want))
				}
			}
		})
	}
}

// TestDecoderPrefixSuffix drives the common-prefix and common-suffix reuse
// with answers built to confuse it: a tiny alphabet of elements (so the
// same bytes repeat at many offsets), edits at either end and in the
// middle, whole elements duplicated or dropped, spacing and indentation
// changes, and bytes edited inside an element (which may break the array:
// then both decoders must fail alike). Every answer is checked against a
// whole decode of the same bytes, and an answer that differs from the
// previous one by a single element must not decode more than it.
func TestDecoderPrefixSuffix(t *testing.T) {
	q, _ := ParsePrefix("cfg/")
	r := rand.New(rand.NewPCG(11, 12))
	long := strings.Repeat("eHl6", 150) // 600 bytes: answers span many of the Decoder's 2 KiB chunks
	alphabet := []string{
		`{"Key":"cfg/a","Value":"eA=="}`, `{"Key":"cfg/b","Value":"eQ=="}`, `{"Key":"cfg/a","Value":"eQ==","Flags":1}`,
		`{"Key":"cfg/\"],[","Value":null}`, `{"Key":"cfg/c","Value":"eA==","ModifyIndex":7}`,
		`{"Key":"cfg/d","Value":"` + long + `"}`, `{"Key":"cfg/e","Value":"` + long + `"}`,
		`{"Key":"cfg/e","Value":"` + long + `","Flags":2}`,
	}
	render := func(els []string, sep string) []byte {
		return []byte("[" + sep + strings.Join(els, ","+sep) + sep + "]")
	}
	for run := range 40 {
		d := NewDecoder(q)
		var els []string
		for range r.IntN(40) {
			els = append(els, alphabet[r.IntN(len(alphabet))])
		}
		sep := ""
		prevOK := false // the previous answer decoded: the decoder kept it
		var lastBody []byte
		for step := range 80 {
			single := false
			switch op := r.IntN(9); {
			case op < 2: // insert one
				els = slices.Insert(els, r.IntN(len(els)+1), alphabet[r.IntN(len(alphabet))])
				single = true
			case op < 4 && len(els) > 0: // delete one
				i := r.IntN(len(els))
				els = slices.Delete(els, i, i+1)
				single = true
			case op < 6 && len(els) > 0: // replace one
				els[r.IntN(len(els))] = alphabet[r.IntN(len(alphabet))]
				single = true
			case op < 7: // duplicate a run
				if len(els) > 0 {
					i := r.IntN(len(els))
					els = slices.Insert(els, i, els[i:min(len(els), i+1+r.IntN(3))]...)
				}
			case op < 8: // spacing changes everything but the elements
				sep = []string{"", " ", "\n  ", "\t"}[r.IntN(4)]
			default: // an unchanged answer
			}
			body := render(els, sep)
			damaged := false
			if r.IntN(15) == 0 && len(body) > 2 { // a damaged byte: both must agree
				damaged = true
				body = slices.Clone(body)
				body[1+r.IntN(len(body)-2)] = "x,]}{\\"[r.IntN(6)]
			}
			got, gotErr := d.Decode(body)
			want, wantErr := Decode(q, body)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("run %d step %d: %s\nincremental err %v, whole err %v", run, step, body, gotErr, wantErr)
			}
			wasOK := prevOK
			prevBody := lastBody
			lastBody = body
			prevOK = gotErr == nil && !damaged // the next answer is then one edit away
			if gotErr != nil {
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("run %d step %d: %s\ngot  %s\nwant %s", run, step, body, js(got), js(want))
			}
			if single && wasOK && !damaged && d.Decoded > 1 {
				t.Fatalf("run %d step %d: one element changed, %d decoded (reused %d)\nprev %s\nbody %s", run, step, d.Decoded, d.Reused, prevBody, body)
			}
		}
	}
}

func TestSplitArray(t *testing.T) {
	tests := []struct {
		in   string
		want []string // nil: an error
	}{
		{`[]`, []string{}},
		{` [ ] `, []string{}},
		{`[1]`, []string{"1"}},
		{`[{"a":"]}"},[1,[2]], "x\"y" ,null]`, []string{`{"a":"]}"}`, `[1,[2]]`, `"x\"y"`, `null`}},
		{"[\n  {\"a\": 1},\n  {\"b\": 2}\n]\n", []string{`{"a": 1}`, `{"b": 2}`}},
		{`[1 2]`, nil},
		{`[1,]`, nil},
		{`[,1]`, nil},
		{`[1]]`, nil},
		{`[1] x`, nil},
		{`[{"a":1}`, nil},
		{`["abc`, nil},
		{`{}`, nil},
		{``, nil},
		{`[1}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := []string{}
			err := splitArray([]byte(tt.in), func(raw []byte) error { got = append(got, string(raw)); return nil })
			if tt.want == nil {
				if err == nil {
					t.Fatalf("split %q = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("split %q = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzDecoder: for any two answers, decoding the second incrementally
// (after the first) gives what a whole decode gives: the same value, or an
// error in both.
func FuzzDecoder(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	next := 0
	a := mutate(r, nil, &next)
	b := mutate(r, a, &next)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	f.Add(ja, jb, uint8(0))
	f.Add(ja, []byte(`[null, {"Service": null}, 1]`), uint8(1))
	f.Add([]byte(`[{"Key":"cfg/a"}]`), []byte(`[{"Key":"cfg/b"}, {"Key":"cfg/a"}]`), uint8(2))
	f.Add([]byte(`[{"Node":"a"}]`), []byte(`[{"Node":"b","Address":"x"}, {"Node":"a"}]`), uint8(3))
	queries := []Query{
		{Kind: KindHealthService, Name: "web", Filter: "any"},
		{Kind: KindHealthService, Name: "web", Filter: "passing"},
		{Kind: KindKVList, Name: "cfg/"},
		{Kind: KindCatalogNodes},
	}
	f.Fuzz(func(t *testing.T, first, second []byte, which uint8) {
		q := queries[int(which)%len(queries)]
		d := NewDecoder(q)
		_, _ = d.Decode(first)
		got, gotErr := d.Decode(second)
		want, wantErr := Decode(q, second)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("incremental err %v, whole err %v", gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("got %s, want %s", js(got), js(want))
		}
	})
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// BenchmarkDecoder is the decoder's cost for one changed instance among n,
// next to a whole decode: splitting, hashing and decoding the change.
func BenchmarkDecoder(b *testing.B) {
	q, _ := ParseService("web")
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1000, 10000} {
		es := make([]*api.ServiceEntry, n)
		for i := range es {
			es[i] = randEntry(r, i)
		}
		b0, _ := json.Marshal(es)
		es[n/2] = randEntry(r, n/2)
		b1, _ := json.Marshal(es)
		b.Run(fmt.Sprintf("instances=%d/split", n), func(b *testing.B) {
			b.SetBytes(int64(len(b0)))
			for b.Loop() {
				if err := splitArray(b0, func([]byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("instances=%d/incremental", n), func(b *testing.B) {
			d := NewDecoder(q)
			if _, err := d.Decode(b0); err != nil { // the first answer decodes everything
				b.Fatal(err)
			}
			b.SetBytes(int64(len(b0)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				body := b0
				if i%2 == 1 {
					body = b1
				}
				if _, err := d.Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
