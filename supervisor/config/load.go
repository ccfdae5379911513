package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/autopilot/autopilot/internal/jsonpos"
)

// Defaults for fields left out of the config.
const (
	DefaultStopTimeout   = 5 * time.Second
	DefaultRenderTimeout = 30 * time.Second
	DefaultCheckTimeout  = 30 * time.Second
	DefaultTelemetryPort = 9090
)

// ErrConfig wraps every configuration error, for errors.Is: the CLI exits 2
// on it. The error it wraps is a *jsonpos.Error naming the file, line,
// column and field path when the place is known.
var ErrConfig = errors.New("config")

// Load reads the config named by spec: a path, "file://PATH", or the config
// text itself (text starting with "{"). Relative template sources resolve
// against the file's directory (the working directory for inline text).
// env looks up the environment (os.LookupEnv in production).
func Load(spec string, env func(string) (string, bool)) (*Config, error) {
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "{") {
		wd, _ := os.Getwd()
		return ParseDir([]byte(trimmed), "inline config", wd, env)
	}
	path := strings.TrimPrefix(trimmed, "file://")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(path); err == nil {
		dir = filepath.Dir(abs)
	}
	return ParseDir(data, path, dir, env)
}

// Parse parses and validates a config in any dialect. name is where data
// came from, for errors; env looks up environment variables for
// interpolation (nil: none is set). Template sources stay as written; use
// ParseDir to resolve them.
func Parse(data []byte, name string, env func(string) (string, bool)) (*Config, error) {
	return ParseDir(data, name, "", env)
}

// ParseDir is Parse with relative template sources resolved against dir.
func ParseDir(data []byte, name, dir string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	c, err := parseConfig(data, name, dir, env)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, nil
}

// Render returns the config text after interpolation: what the dialect
// parsers read (ContainerPilot's -template flag prints this).
func Render(data []byte, name string, env func(string) (string, bool)) ([]byte, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, invalidUTF8(data, name))
	}
	out, _, err := interpolate(data, name, env)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return out, nil
}

func invalidUTF8(data []byte, name string) error {
	off := 0
	for off < len(data) {
		r, n := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		off += n
	}
	return errorAtSrc(data, name, int64(off), "invalid UTF-8 in the config")
}

// v3Keys and v2Keys are the top-level fields only one dialect has.
var (
	v3Keys = []string{"jobs", "watches", "control"}
	v2Keys = []string{"services", "backends", "preStart", "onStart", "preStop", "postStop", "coprocesses", "tasks", "etcd"}
)

func parseConfig(src []byte, name, dir string, env func(string) (string, bool)) (*Config, error) {
	if !utf8.Valid(src) {
		return nil, invalidUTF8(src, name)
	}
	rendered, tmap, err := interpolate(src, name, env)
	if err != nil {
		return nil, err
	}
	jsonText, jmap, err := jsonpos.JSON5(rendered)
	if err != nil {
		var se *jsonpos.SyntaxError
		if errors.As(err, &se) {
			off, note := tmap.Map(se.Offset)
			msg := se.Msg
			if note == "" && tmap.emptyActionAt(se.Offset) {
				note = "just after a template action or ${VAR} that rendered nothing: is a variable not set?"
			}
			if note != "" {
				msg += " (" + note + ")"
			}
			return nil, errorAtSrc(src, name, off, msg)
		}
		return nil, err
	}
	opts := jsonpos.Options{CaseSensitive: true, Source: src, MapOffset: func(off int64) (int64, string) {
		return tmap.Map(jmap.Map(off))
	}}

	// The top-level keys decide the dialect (none when not an object: the
	// decode below says so).
	top := jsonpos.Keys(jsonText)
	has := func(k string) bool { return slices.Contains(top, k) }
	t := &translator{c: &Config{Name: name, Dir: dir}, src: src}
	if tmap != nil {
		t.unset = tmap.unset
	}
	v3 := slices.ContainsFunc(v3Keys, has)
	if v3 {
		var r rawV3
		for _, k := range v2Keys {
			if has(k) {
				pos, err := jsonpos.Decode(jsonText, name, &map[string]json.RawMessage{}, opts)
				if err != nil {
					return nil, err // a repeated key: its own error, and no positions to place the dialect error
				}
				return nil, pos.ErrorAt(k, fmt.Sprintf("a ContainerPilot 2 field in a ContainerPilot 3 config (it has %s); write it as jobs and watches", firstKey(has, v3Keys)))
			}
		}
		pos, err := jsonpos.Decode(jsonText, name, &r, opts)
		if err != nil {
			return nil, err
		}
		t.pos = pos
		t.c.Dialect = ContainerPilot3
		if err := t.v3(&r); err != nil {
			return nil, err
		}
	} else {
		var r rawV2
		pos, err := jsonpos.Decode(jsonText, name, &r, opts)
		if err != nil {
			return nil, err
		}
		t.pos = pos
		t.c.Dialect = ContainerPilot2
		if has("templates") || has("renderTimeout") {
			t.c.Dialect = Autopilot
		}
		if err := t.v2(&r); err != nil {
			return nil, err
		}
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return t.c, nil
}

func firstKey(has func(string) bool, keys []string) string {
	for _, k := range keys {
		if has(k) {
			return k
		}
	}
	return ""
}

// WithApp returns a copy of c that runs argv, the command given on the
// command line:
//
//   - ContainerPilot 2 and autopilot configs describe the app's lifecycle
//     around a command-line app: their Main job "main" gets argv as its Exec.
//     argv is required.
//   - A ContainerPilot 3 config names its processes in jobs and runs without
//     a command. With one, argv becomes an extra Main job named "main",
//     started at startup and never restarted, whose exit ends the run; a
//     config that already has a job named "main" is refused.
func (c *Config) WithApp(argv []string) (*Config, error) {
	n := *c
	n.Jobs = slices.Clone(c.Jobs)
	for i := range n.Jobs {
		if n.Jobs[i].Main {
			if len(argv) == 0 {
				return nil, fmt.Errorf("%w: %s: no command to run: a %s config runs the app given on the command line", ErrConfig, c.Name, c.Dialect)
			}
			n.Jobs[i].Exec.Argv = slices.Clone(argv)
			return &n, nil
		}
	}
	if len(argv) == 0 {
		return &n, nil
	}
	if n.Job(MainJob) != nil {
		return nil, fmt.Errorf("%w: %s: the command line's command runs as job %q, but the config has a job of that name", ErrConfig, c.Name, MainJob)
	}
	n.Jobs = append(n.Jobs, Job{Name: MainJob, Main: true, Exec: commandOf(argv), When: When{Event: Startup}, StopTimeout: c.StopTimeout})
	return &n, nil
}

// MainJob is the name of the job that runs the command-line app.
const MainJob = "main"

// Job returns the job named name, or nil.
func (c *Config) Job(name string) *Job {
	for i := range c.Jobs {
		if c.Jobs[i].Name == name {
			return &c.Jobs[i]
		}
	}
	return nil
}

// String names the dialect as the docs do.
func (d Dialect) String() string {
	switch d {
	case ContainerPilot2:
		return "ContainerPilot 2"
	case ContainerPilot3:
		return "ContainerPilot 3"
	}
	return "autopilot"
}

// ServiceID is the Consul service ID of a registered job on host: its
// explicit ID, else the dialect's rule. ContainerPilot (2 and 3) registers
// NAME-HOSTNAME, so a container migrated from it keeps its registration;
// autopilot registers NAME-HOSTNAME-PORT.
func (c *Config) ServiceID(j *Job, hostname string) string {
	if j.ID != "" {
		return j.ID
	}
	if c.Dialect == Autopilot {
		return fmt.Sprintf("%s-%s-%d", j.Name, hostname, j.Port)
	}
	return j.Name + "-" + hostname
}

// IPEnvVar is the environment variable that gives the processes a
// registered job's advertised address: CONTAINERPILOT_<NAME>_IP for
// ContainerPilot configs (the name upper-cased, '-' as '_', as
// ContainerPilot does), AUTOPILOT_<NAME>_IP for autopilot's (every
// character outside A-Z and 0-9 as '_').
func (c *Config) IPEnvVar(name string) string {
	if c.Dialect == Autopilot {
		var b strings.Builder
		for _, r := range strings.ToUpper(name) {
			if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return "AUTOPILOT_" + b.String() + "_IP"
	}
	return "CONTAINERPILOT_" + strings.ReplaceAll(strings.ToUpper(name), "-", "_") + "_IP"
}

// PIDEnvVar is the variable that gives processes the supervisor's (v3) or
// app's (v2, autopilot) PID: CONTAINERPILOT_PID or AUTOPILOT_APP_PID.
func (c *Config) PIDEnvVar() string {
	if c.Dialect == Autopilot {
		return "AUTOPILOT_APP_PID"
	}
	return "CONTAINERPILOT_PID"
}
