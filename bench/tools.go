package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// consulTemplateVersion is the release autopilot is compared against.
const consulTemplateVersion = "v0.42.1"

// consulTemplateBin returns the cached consul-template binary, installing it
// with `go install` into ~/.cache/autopilot-bench/bin (outside the repo) if missing.
func consulTemplateBin() (string, error) {
	if b := os.Getenv("CONSUL_TEMPLATE_BIN"); b != "" {
		return b, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "autopilot-bench", "bin")
	bin := filepath.Join(dir, "consul-template")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	args := []string{"install", "github.com/hashicorp/consul-template@" + consulTemplateVersion}
	fmt.Fprintf(os.Stderr, "bench: consul-template not cached; running GOBIN=%s go %s\n", dir, strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=")
	cmd.Dir = os.TempDir() // outside the module, so its go.mod is not touched
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install consul-template@%s: %w", consulTemplateVersion, err)
	}
	return bin, nil
}

// autopilotBin builds bin/autopilot with `make build` unless -autopilot names one.
func autopilotBin(path string, build bool) (string, error) {
	if build {
		fmt.Fprintln(os.Stderr, "bench: make build")
		cmd := exec.Command("make", "build")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("make build: %w", err)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("autopilot binary: %w", err)
	}
	return abs, nil
}

// versionOf runs BIN ARGS and returns the first line of its output.
func versionOf(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// tool is one of the two programs under comparison.
type tool struct {
	name string // "autopilot" or "consul-template"
	bin  string
}

// tmplSpec is one template for a tool: source, destination, optional command.
type tmplSpec struct{ src, dest, command string }

// args returns the command line that renders specs from consulAddr.
func (t tool) args(consulAddr, wait string, specs []tmplSpec) []string {
	var a []string
	if t.name == "autopilot" {
		a = []string{"render", "-consul", consulAddr, "-log-level", "warn"}
	} else {
		a = []string{"-consul-addr", consulAddr, "-log-level", "warn"}
	}
	if wait != "" {
		a = append(a, "-wait", wait)
	}
	for _, s := range specs {
		v := s.src + ":" + s.dest
		if s.command != "" {
			v += ":" + s.command
		}
		a = append(a, "-template", v)
	}
	return a
}

// run starts the tool; cmdline is what to print next to its figures.
func (t tool) run(consulAddr, wait string, specs []tmplSpec) (*proc, string, error) {
	args := t.args(consulAddr, wait, specs)
	p, err := start(t.name, nil, nil, t.bin, args...)
	return p, commandLine(t.bin, args), err
}

// commandLine shortens a command for printing: binary base name, and only
// the first two -template flags when there are many.
func commandLine(bin string, args []string) string {
	var b strings.Builder
	b.WriteString(filepath.Base(bin))
	tmpls := 0
	for i := 0; i < len(args); i++ {
		if args[i] == "-template" && i+1 < len(args) {
			tmpls++
			if tmpls > 2 {
				i++
				continue
			}
		}
		b.WriteString(" " + args[i])
	}
	if tmpls > 2 {
		fmt.Fprintf(&b, " ... (%d -template flags in all)", tmpls)
	}
	return b.String()
}
