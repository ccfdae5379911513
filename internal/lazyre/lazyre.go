// Package lazyre provides regular expressions compiled on first use.
//
// A package-level regexp.MustCompile runs during package initialisation,
// before main: in the supervisor that is time between its own start and
// its app's fork (issue 13), spent on expressions most runs never use
// (error messages, template features, query grammars).
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr on its first call and returns
// the same *regexp.Regexp on every call. Like regexp.MustCompile it panics
// if expr does not compile, on that first call: every expression is
// exercised by its package's tests.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
