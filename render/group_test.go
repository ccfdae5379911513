package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/testenv"
)

// sharedCommand is a command that records, at each run, what the files it
// reloads hold, and fails while any of them contains "bad".
type sharedCommand struct {
	files []string
	mu    sync.Mutex
	runs  []string // one line per run: the files' contents, joined
}

func (c *sharedCommand) run(ctx context.Context) ([]byte, error) {
	var seen []string
	for _, f := range c.files {
		b, _ := os.ReadFile(f)
		seen = append(seen, strings.TrimSpace(string(b)))
	}
	line := strings.Join(seen, " | ")
	c.mu.Lock()
	c.runs = append(c.runs, line)
	c.mu.Unlock()
	if strings.Contains(line, "bad") {
		return []byte("config rejected"), errors.New("exit status 1")
	}
	return nil, nil
}

func (c *sharedCommand) Runs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.runs...)
}

// TestRunnerSharedCommandRunsOncePerChange: templates with the same command
// render in one pass and run it once, after all their files are in place,
// as consul-template runs each distinct command once per pass; a template
// with another command runs its own. A failed shared command puts every
// file it ran for back and runs once more.
func TestRunnerSharedCommandRunsOncePerChange(t *testing.T) {
	src := newMapSource()
	q := svcQuery(t, "web")
	src.set(q, instances("web", "127.0.0.1"))
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf"), filepath.Join(dir, "c.conf")
	shared := &sharedCommand{files: []string{a, b}}
	other := &sharedCommand{files: []string{c}}
	tmpl := writeTemp(t, "t.ctmpl", `{{ range service "web" }}{{ .Address }}{{ end }}`)
	cfgs := []Config{
		{Source: tmpl, Destination: a, Command: shared.run, CommandName: "reload proxy"},
		{Source: tmpl, Destination: c, Command: other.run, CommandName: "reload other"},
		{Source: tmpl, Destination: b, Command: shared.run, CommandName: "reload proxy"},
	}
	r, err := NewRunner(src, cfgs, RunnerOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if sizes := groupSizes(r.groups); sizes != "[2 1]" {
		t.Fatalf("group sizes %s; want one group of two (a, b) and c alone", sizes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := shared.Runs(); len(got) != 1 || got[0] != "127.0.0.1 | 127.0.0.1" {
		t.Fatalf("shared command runs after Once: %q; want one, with both files in place", got)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(runCtx); close(done) }()
	// Run's first pass finds both files as Once left them.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		s := r.Stats()
		return s[0].Unchanged >= 1 && s[2].Unchanged >= 1, fmt.Sprintf("%+v", s)
	})
	src.set(q, instances("web", "127.0.0.2"))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		got := shared.Runs()
		return len(got) >= 2 && got[len(got)-1] == "127.0.0.2 | 127.0.0.2", fmt.Sprintf("%q", got)
	})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		got := other.Runs()
		return len(got) == 2, fmt.Sprintf("%q", got)
	})

	// A render the command rejects: both files go back, the command runs
	// again on the restored files, then each file is tried alone (both are
	// rejected alone too, so both go back again).
	src.set(q, instances("web", "bad"))
	want := []string{"127.0.0.1 | 127.0.0.1", "127.0.0.2 | 127.0.0.2", "bad | bad", "127.0.0.2 | 127.0.0.2",
		"bad | 127.0.0.2", "127.0.0.2 | 127.0.0.2", "127.0.0.2 | bad", "127.0.0.2 | 127.0.0.2"}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return len(shared.Runs()) == len(want), fmt.Sprintf("%q", shared.Runs())
	})
	stop()
	<-done
	if got := shared.Runs(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("shared command runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := readFile(t, a)+readFile(t, b), "127.0.0.2127.0.0.2"; got != want {
		t.Errorf("files after the rejected render: %q, want the previous ones", got)
	}
	for _, i := range []int{0, 2} {
		if s := r.Stats()[i]; s.Writes != 3 || s.Reloads != 4 || s.ReloadFailures != 2 || s.Commands != 6 || s.Rollbacks != 2 {
			t.Errorf("%s stats: %d writes, %d reloads (%d failed), %d commands, %d rollbacks; want 3, 4 (2), 6, 2", s.Destination, s.Writes, s.Reloads, s.ReloadFailures, s.Commands, s.Rollbacks)
		}
	}
}

// TestRunnerSharedCommandFindsRejectedTemplate: when the shared command
// fails for several changed files, each is tried alone, so a good change
// stays in place; a render the command rejected stays out while its data
// does not change, so the other templates' later changes reach the command
// without it.
func TestRunnerSharedCommandFindsRejectedTemplate(t *testing.T) {
	src := newMapSource()
	web, db, lb := svcQuery(t, "web"), svcQuery(t, "db"), svcQuery(t, "lb")
	src.set(web, instances("web", "w1"))
	src.set(db, instances("db", "d1"))
	src.set(lb, instances("lb", "l1"))
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	shared := &sharedCommand{files: []string{a, b}}
	// a renders web and lb; b renders web, turning the address "x" into a
	// line the command rejects, and db.
	ta := writeTemp(t, "a.ctmpl", `{{ range service "web" }}{{ .Address }}{{ end }}+{{ range service "lb" }}{{ .Address }}{{ end }}`)
	tb := writeTemp(t, "b.ctmpl", `{{ range service "web" }}{{ if eq .Address "x" }}bad{{ else }}{{ .Address }}{{ end }}{{ end }}/{{ range service "db" }}{{ .Address }}{{ end }}`)
	r, err := NewRunner(src, []Config{
		{Source: ta, Destination: a, Command: shared.run, CommandName: "reload proxy"},
		{Source: tb, Destination: b, Command: shared.run, CommandName: "reload proxy"},
	}, RunnerOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Once(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	var want []string
	expect := func(files string, runs ...string) {
		t.Helper()
		want = append(want, runs...)
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			got := shared.Runs()
			return strings.Join(got, "\n") == strings.Join(want, "\n"), strings.Join(got, "\n")
		})
		if got := readFile(t, a) + " | " + readFile(t, b); got != files {
			t.Fatalf("files %q, want %q", got, files)
		}
	}
	expect("w1+l1 | w1/d1", "w1+l1 | w1/d1")
	// Both change; the command rejects b's change, not a's: both go back,
	// then a alone goes in and b alone is rejected.
	src.set(web, instances("web", "x"))
	expect("x+l1 | w1/d1", "x+l1 | bad/d1", "w1+l1 | w1/d1", "x+l1 | w1/d1", "x+l1 | bad/d1", "x+l1 | w1/d1")
	// b's own data changes: its new render is tried, and rejected.
	src.set(db, instances("db", "d2"))
	expect("x+l1 | w1/d1", "x+l1 | bad/d2", "x+l1 | w1/d1")
	// Only a's data changes: b renders what was rejected, with none of its
	// data changed, and stays out; a's change reaches the command.
	src.set(lb, instances("lb", "l2"))
	expect("x+l2 | w1/d1", "x+l2 | w1/d1")
}

// TestGroupUnits: only templates whose command and reload timing agree,
// without hooks, and only in write mode, render together.
func TestGroupUnits(t *testing.T) {
	cmd := func(context.Context) ([]byte, error) { return nil, nil }
	hook := func(context.Context) error { return nil }
	base := Config{Command: cmd, CommandName: "reload"}
	with := func(f func(*Config)) Config { c := base; f(&c); return c }
	tests := []struct {
		name   string
		cfgs   []Config
		mode   Mode
		groups string // sizes, in configuration order
	}{
		{"same command", []Config{base, base, base}, ModeWrite, "[3]"},
		{"dry run", []Config{base, base}, ModeDryRun, "[1 1]"},
		{"other command", []Config{base, with(func(c *Config) { c.CommandName = "other" })}, ModeWrite, "[1 1]"},
		{"other wait", []Config{base, with(func(c *Config) { c.Wait = Wait{Min: time.Second, Max: 2 * time.Second} })}, ModeWrite, "[1 1]"},
		{"other splay", []Config{base, with(func(c *Config) { c.Splay = time.Second })}, ModeWrite, "[1 1]"},
		{"other timeout", []Config{base, with(func(c *Config) { c.CommandTimeout = time.Second })}, ModeWrite, "[1 1]"},
		{"reload hook", []Config{base, with(func(c *Config) { c.Reload = hook })}, ModeWrite, "[1 1]"},
		{"no command", []Config{{}, {}}, ModeWrite, "[1 1]"},
		{"named reload hook", []Config{{Reload: hook, ReloadName: "exec"}, {Reload: hook, ReloadName: "exec"}, {Reload: hook}}, ModeWrite, "[2 1]"},
		{"apply hook", []Config{base, with(func(c *Config) { c.Apply = func(context.Context, []byte, []byte) (bool, error) { return false, nil } })}, ModeWrite, "[1 1]"},
		{"two pairs", []Config{base, with(func(c *Config) { c.CommandName = "x" }), base, with(func(c *Config) { c.CommandName = "x" })}, ModeWrite, "[2 2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var units []*unit
			for _, c := range tt.cfgs {
				units = append(units, &unit{cfg: c, notify: make(chan struct{}, 1)})
			}
			groups := groupUnits(units, tt.mode)
			if got := groupSizes(groups); got != tt.groups {
				t.Errorf("group sizes %s, want %s", got, tt.groups)
			}
			for _, u := range units {
				if u.notify != u.group.wake {
					t.Errorf("%+v: its notify channel is not its group's", u.cfg)
				}
			}
		})
	}
}

// TestGroupOnceReportsMissingData: in Once, a member whose data never
// arrives makes the group's Once fail with a MissingError naming it, while
// the member whose data is there is written and its command run.
func TestGroupOnceReportsMissingData(t *testing.T) {
	src := newMapSource()
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	cmd := &sharedCommand{files: []string{a, b}}
	r, err := NewRunner(src, []Config{
		{Source: writeTemp(t, "a.ctmpl", `{{ range service "web" }}{{ .Address }}{{ end }}`), Destination: a, Command: cmd.run, CommandName: "reload"},
		{Source: writeTemp(t, "b.ctmpl", `{{ range service "db" }}{{ .Address }}{{ end }}`), Destination: b, Command: cmd.run, CommandName: "reload"},
	}, RunnerOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = r.Once(ctx)
	var me *MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), `"db`) {
		t.Fatalf("Once: %v; want a MissingError naming db", err)
	}
	if got := cmd.Runs(); len(got) != 1 || got[0] != "127.0.0.1 | " {
		t.Errorf("command runs %q; want one, for a.conf alone", got)
	}
}

// groupSizes lists how many templates each group has.
func groupSizes(groups []*group) string {
	sizes := make([]int, len(groups))
	for i, g := range groups {
		sizes[i] = len(g.units)
	}
	return fmt.Sprint(sizes)
}
