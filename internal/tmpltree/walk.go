// Package tmpltree walks text/template parse trees. The supervisor's config
// interpolation rewrites and checks the nodes of a config's template, and
// render finds the range bodies it can remember: both visit every node.
package tmpltree

import (
	"reflect"
	"text/template/parse"
)

// Walk calls f on n and, while f returns true, on every node under n, in
// document order: a node before its children, a branch's pipeline before
// its body and its else body, a pipeline's declared variables before its
// commands. nil nodes are skipped. f may change a node's children before
// they are visited.
func Walk(n parse.Node, f func(parse.Node) bool) {
	if n == nil || reflect.ValueOf(n).IsNil() || !f(n) {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			Walk(c, f)
		}
	case *parse.ActionNode:
		Walk(n.Pipe, f)
	case *parse.PipeNode:
		for _, v := range n.Decl {
			Walk(v, f)
		}
		for _, c := range n.Cmds {
			Walk(c, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			Walk(a, f)
		}
	case *parse.ChainNode:
		Walk(n.Node, f)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, f)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, f)
	case *parse.TemplateNode:
		Walk(n.Pipe, f)
	}
}

func walkBranch(b *parse.BranchNode, f func(parse.Node) bool) {
	Walk(b.Pipe, f)
	Walk(b.List, f)
	Walk(b.ElseList, f)
}
