package tmpltree

import (
	"fmt"
	"strings"
	"testing"
	"text/template"
	"text/template/parse"
)

func TestWalk(t *testing.T) {
	tm := template.Must(template.New("t").Funcs(template.FuncMap{"f": strings.ToUpper}).Parse(
		`a{{$x := f "s"}}{{if .A}}{{range $i, $e := .B}}{{(f $e).C}}{{end}}{{else}}{{template "u" $x}}{{end}}{{with .D}}{{f "x"}}{{end}}`,
	))
	for _, tc := range []struct {
		name string
		stop parse.NodeType // f returns false on this kind: its children are not visited
		want string
	}{
		{name: "all", stop: -1, want: "List Text Action Pipe Variable Command Identifier String If Pipe Command Field List Range Pipe Variable Variable Command Field List Action Pipe Command Chain Pipe Command Identifier Variable List Template Pipe Command Variable With Pipe Command Field List Action Pipe Command Identifier String"},
		{name: "not into ifs", stop: parse.NodeIf, want: "List Text Action Pipe Variable Command Identifier String If With Pipe Command Field List Action Pipe Command Identifier String"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			Walk(tm.Tree.Root, func(n parse.Node) bool {
				got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", n), "*parse."))
				return n.Type() != tc.stop
			})
			if s := strings.ReplaceAll(strings.Join(got, " "), "Node", ""); s != tc.want {
				t.Fatalf("got  %s\nwant %s", s, tc.want)
			}
		})
	}
}
