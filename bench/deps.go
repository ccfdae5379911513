package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// depsVariant is a fork-only program linking autopilot's imports minus the
// ones whose path starts with one of drop.
type depsVariant struct {
	name string
	drop []string
}

var depsVariants = []depsVariant{
	{"all of autopilot's imports", nil},
	{"without the Prometheus client (client_golang, client_model, common)", []string{"github.com/prometheus/"}},
	{"without sprig", []string{"github.com/Masterminds/sprig/"}},
	{"without both", []string{"github.com/prometheus/", "github.com/Masterminds/sprig/"}},
}

// forkOnlyMain is the variants' main: it starts the command after "--" and
// waits for it, so its start-to-app time is the Go runtime's start and the
// linked packages' init, without any of autopilot's own work.
const forkOnlyMain = `
func main() {
	for i, a := range os.Args {
		if a == "--" && i+1 < len(os.Args) {
			cmd := exec.Command(os.Args[i+1], os.Args[i+2:]...)
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Start(); err != nil {
				os.Exit(1)
			}
			_ = cmd.Wait()
			return
		}
	}
	os.Exit(2)
}
`

// deps is scenario 9: where the supervisor's start-to-exec overhead goes.
// Fork-only programs linking autopilot's imports, or all but the
// Prometheus client or sprig, start the same app as autopilot and the bare
// app, interleaved; the difference between them is what the dependencies'
// package init and size cost before main runs (issue 13's +5 ms goal).
func (e *env) deps(cfg config) (*table, error) {
	dir := filepath.Join(e.dir, "deps")
	bins, err := buildDepsVariants(dir)
	if err != nil {
		return nil, err
	}
	st, err := e.startupScenario("deps", bins...)
	if err != nil {
		return nil, err
	}
	defer st.agent.proc.stop(5 * time.Second)
	adir, confPath, self, ap := st.dir, st.confPath, st.self, st.ap

	type runner struct {
		name string
		path string
		args []string
	}
	runners := []runner{
		{"the app run bare", self, nil},
		{"autopilot supervising it (scenario 5's config)", ap, []string{"-config", confPath, "--", self}},
	}
	for i, v := range depsVariants {
		runners = append(runners, runner{"fork-only program, " + v.name, bins[i], []string{"--", self}})
	}
	lat := make([][]time.Duration, len(runners))
	for i := range cfg.starts {
		for k, r := range runners {
			stamp := filepath.Join(adir, fmt.Sprintf("stamp-%d-%d", k, i))
			p, d, err := e.timeToApp(stamp, r.path, r.args...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
			p.stop(5 * time.Second)
			lat[k] = append(lat[k], d)
		}
	}

	tb := &table{title: fmt.Sprintf("9. Where the start-to-exec overhead goes: fork-only programs linking autopilot's dependencies, %d interleaved starts", cfg.starts)}
	tb.cols = [2]string{"start to the app's first instruction, median", "over the bare app"}
	tb.noRatios = true
	bare := percentile(lat[0], 50)
	for k, r := range runners {
		m := percentile(lat[k], 50)
		tb.addMs(r.name, m, m-bare)
	}
	tb.command(fmt.Sprintf("%s -config autopilot.json -- APP", filepath.Base(ap)))
	tb.command("FORK-ONLY -- APP  (built in the run: main starts APP and waits; blank imports of autopilot's imports as `go list -deps ./cmd/autopilot` gives them, minus the dropped ones; CGO_ENABLED=0 -trimpath -ldflags '-s -w', as `make build`)")
	tb.note("The app is the harness binary re-run as a helper that stamps its start time. A fork-only program runs no autopilot code: its overhead is the Go runtime's start, the linked packages' `init` and the page faults of a larger binary. autopilot's own work from `main` to the fork is the difference between its row and the first fork-only row; a dependency's cost is the difference between the first fork-only row and the row without it. Goal (issue 13): autopilot at most 5 ms over the bare app.")
	return tb, nil
}

// buildDepsVariants writes and builds the fork-only programs in dir and
// returns their binaries in depsVariants' order. They build in a module of
// their own, with autopilot's go.mod and go.sum (so the same versions).
func buildDepsVariants(dir string) ([]string, error) {
	imports, err := productImports()
	if err != nil {
		return nil, err
	}
	gomod, err := goEnv("GOMOD")
	if err != nil {
		return nil, err
	}
	mod, err := os.ReadFile(gomod)
	if err != nil {
		return nil, err
	}
	sum, err := os.ReadFile(filepath.Join(filepath.Dir(gomod), "go.sum"))
	if err != nil {
		return nil, err
	}
	mod = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(mod, []byte("module forkonly"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), mod, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		return nil, err
	}
	var bins []string
	for i, v := range depsVariants {
		pkg := fmt.Sprintf("v%d", i)
		var src bytes.Buffer
		src.WriteString("// Command " + pkg + " is a fork-only program " + v.name + ".\npackage main\n\nimport (\n\t\"os\"\n\t\"os/exec\"\n")
		for _, imp := range imports {
			if imp == "os" || imp == "os/exec" || slices.ContainsFunc(v.drop, func(d string) bool { return strings.HasPrefix(imp, d) }) {
				continue
			}
			fmt.Fprintf(&src, "\t_ %q\n", imp)
		}
		src.WriteString(")\n" + forkOnlyMain)
		if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, pkg, "main.go"), src.Bytes(), 0o644); err != nil {
			return nil, err
		}
		bin := filepath.Join(dir, pkg, "bin")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./"+pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build fork-only program %s: %w\n%s", v.name, err, out)
		}
		bins = append(bins, bin)
	}
	return bins, nil
}

// productImports lists what autopilot's own packages import (standard
// library and third-party), as the binary links them.
func productImports() ([]string, error) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{join .Imports "\n"}}{{end}}{{end}}`, "./cmd/autopilot").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps ./cmd/autopilot: %w", err)
	}
	self, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w", err)
	}
	prefix := strings.TrimSpace(string(self)) + "/"
	var imports []string
	for _, l := range strings.Fields(string(out)) {
		if l != "C" && !strings.HasPrefix(l, prefix) && !slices.Contains(imports, l) {
			imports = append(imports, l)
		}
	}
	slices.Sort(imports)
	if len(imports) == 0 {
		return nil, fmt.Errorf("go list -deps ./cmd/autopilot: no imports")
	}
	return imports, nil
}

func goEnv(name string) (string, error) {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
