package dep

import (
	"strings"
	"testing"
)

func TestParseService(t *testing.T) {
	tests := []struct {
		in      string
		want    Query
		wantErr string
	}{
		{in: "web", want: Query{Kind: KindHealthService, Name: "web", Filter: "passing"}},
		{in: "prod.web", want: Query{Kind: KindHealthService, Name: "web", Tag: "prod", Filter: "passing"}},
		{in: "v1.2.web@dc-2", want: Query{Kind: KindHealthService, Name: "web", Tag: "v1.2", DC: "dc-2", Filter: "passing"}},
		{in: "web|any", want: Query{Kind: KindHealthService, Name: "web", Filter: "any"}},
		{in: "web|warning,passing", want: Query{Kind: KindHealthService, Name: "web", Filter: "passing,warning"}},
		{in: "web|passing,passing", want: Query{Kind: KindHealthService, Name: "web", Filter: "passing"}},
		{in: "web~_agent|critical", want: Query{Kind: KindHealthService, Name: "web", Near: "_agent", Filter: "critical"}},
		{in: "k=v.web@dc1|maintenance", want: Query{Kind: KindHealthService, Name: "web", Tag: "k=v", DC: "dc1", Filter: "maintenance"}},
		{in: "", wantErr: "want [tag.]name"},
		{in: "web|bogus", wantErr: `invalid health filter "bogus"`},
		{in: "web@", wantErr: "want [tag.]name"},
		{in: "we b", wantErr: "want [tag.]name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseService(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseService(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseService(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseService(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestQueryAccepts(t *testing.T) {
	tests := []struct {
		filter, status string
		want           bool
	}{
		{"passing", "passing", true},
		{"passing", "warning", false},
		{"any", "critical", true},
		{"passing,warning", "warning", true},
		{"passing,warning", "maintenance", false},
	}
	for _, tt := range tests {
		q := Query{Kind: KindHealthService, Filter: tt.filter}
		if got := q.Accepts(tt.status); got != tt.want {
			t.Errorf("filter %q accepts %q = %v, want %v", tt.filter, tt.status, got, tt.want)
		}
	}
}

func TestParseKVAndNode(t *testing.T) {
	tests := []struct {
		name  string
		parse func(string) (Query, error)
		in    string
		want  Query
	}{
		{"key", ParseKey, "a/b", Query{Kind: KindKVGet, Name: "a/b"}},
		{"key dc", ParseKey, "/a/b@east", Query{Kind: KindKVGet, Name: "a/b", DC: "east"}},
		{"prefix empty", ParsePrefix, "", Query{Kind: KindKVList}},
		{"prefix", ParsePrefix, "config/", Query{Kind: KindKVList, Name: "config/"}},
		{"prefix only dc", ParsePrefix, "@east", Query{Kind: KindKVList, DC: "east"}},
		{"node local", ParseNode, "", Query{Kind: KindCatalogNode}},
		{"node", ParseNode, "n1@east", Query{Kind: KindCatalogNode, Name: "n1", DC: "east"}},
		{"nodes dc", func(s string) (Query, error) { return ParseDC(KindCatalogNodes, s) }, "@east", Query{Kind: KindCatalogNodes, DC: "east"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := ParseDC(KindCatalogServices, "east"); err == nil {
		t.Fatal(`ParseDC("east") succeeded, want an error asking for @dc`)
	}
}

// FuzzParseService checks that the parser never panics and that what it
// accepts round-trips through Query.String.
func FuzzParseService(f *testing.F) {
	for _, s := range []string{"web", "prod.web@dc1|passing,warning", "web~_agent", "a.b.c", "|any", "web|"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseService(s)
		if err != nil {
			return
		}
		if q.Name == "" || q.Filter == "" {
			t.Fatalf("ParseService(%q) = %+v: empty name or filter", s, q)
		}
		str := q.String()
		inner := str[len(`service "`) : len(str)-1]
		q2, err := ParseService(inner)
		if err != nil || q2 != q {
			t.Fatalf("round trip %q -> %q -> %+v, %v; want %+v", s, inner, q2, err, q)
		}
	})
}
