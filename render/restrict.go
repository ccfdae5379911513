package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// This file holds the two limits consul-template v0.42.1 lets a config put
// on a template: function_denylist (template/template.go, funcMap) and
// sandbox_path (template/funcs.go, resolveSandboxedPath). Both behave as
// there, so a config that relies on them keeps its guarantees unchanged.

// errDisabled is what a denied function returns: consul-template's text,
// so the render fails with "error calling env: function is disabled".
var errDisabled = errors.New("function is disabled")

// denied stands in for every denied function. Its signature is
// consul-template's, so text/template checks a call's arguments against it
// (strings only) before it can fail, as there.
func denied(...string) (string, error) { return "", errDisabled }

// globMatch reports whether name matches pattern, in which "*" stands for
// any run of characters and nothing else is special (the glob consul-template
// applies to its denylist, ryanuber/go-glob: `sprig_*` denies all of Sprig).
func globMatch(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := len(parts) - 1
	for _, p := range parts[1:last] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return strings.HasSuffix(name, parts[last])
}

// isDenied reports whether any pattern of the denylist matches name.
func isDenied(name string, denylist []string) bool {
	for _, p := range denylist {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// builtins are text/template's own functions. consul-template's denylist
// only reaches its FuncMap, so these keep working under any pattern (even
// "*"); Sprig's slice, which shadows the builtin here, is spared with them.
var builtins = map[string]bool{
	"and": true, "call": true, "html": true, "index": true, "slice": true, "js": true, "len": true,
	"not": true, "or": true, "print": true, "printf": true, "println": true, "urlquery": true,
	"eq": true, "ge": true, "gt": true, "le": true, "lt": true, "ne": true,
}

// deny replaces every function of funcs that the denylist matches with
// denied. A left-out function (Vault, Nomad, plugin...) that the text names
// and the denylist matches is bound to denied as well: consul-template
// defines it, so there it parses and fails only when called, and a template
// that never reaches the call still renders. Sprig's plain names, which
// consul-template lacks (a template calling one fails there anyway), are
// denied like the rest, so "*" still means every function.
func deny(funcs template.FuncMap, text string, denylist []string) {
	if len(denylist) == 0 {
		return
	}
	for name := range funcs {
		if !builtins[name] && isDenied(name, denylist) {
			funcs[name] = denied
		}
	}
	for name := range leftOut {
		if strings.Contains(text, name) && isDenied(name, denylist) {
			funcs[name] = denied
		}
	}
}

// fileIn is the file function confined to sandbox ("" confines nothing).
// As consul-template's, it trims the path, and with a sandbox the file must
// exist and resolve, symlinks followed, inside the sandbox (also resolved):
// a link inside pointing out is refused, and the resolved path is read.
// Relative paths resolve against the working directory, not the sandbox.
func fileIn(sandbox string) func(string) (string, error) {
	return func(path string) (string, error) {
		if path == "" {
			return "", nil
		}
		p, err := sandboxedPath(sandbox, strings.TrimSpace(path))
		if err != nil {
			return "", fmt.Errorf("file: %w", err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("file: %w", err)
		}
		return string(b), nil
	}
}

// sandboxedPath is path cleaned, or with a sandbox, resolved and checked to
// lie inside the resolved sandbox. The errors are consul-template's. A
// relative sandbox with an absolute path (or the reverse) is refused, as
// filepath.Rel refuses it there.
func sandboxedPath(sandbox, path string) (string, error) {
	if sandbox == "" {
		return filepath.Clean(path), nil
	}
	root, err := filepath.EvalSymlinks(filepath.Clean(sandbox))
	if err != nil {
		return "", fmt.Errorf("failed to resolve sandbox path: %w", err)
	}
	target, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("failed to resolve target path: %w", err)
	}
	rel, err := filepath.Rel(root, target)
	if err != nil {
		return "", fmt.Errorf("failed to get relative path: %w", err)
	}
	if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("'%s' is outside of sandbox", path)
	}
	return target, nil
}
