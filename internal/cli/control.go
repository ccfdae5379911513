package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/autopilot/autopilot/internal/control"
	"github.com/autopilot/autopilot/supervisor/config"
)

// ContainerPilotName is the program name under which autopilot behaves as
// ContainerPilot would (a /bin/containerpilot symlink in migrated images).
const ContainerPilotName = "containerpilot"

// RunAs is Run for a program invoked as argv0: under the name
// "containerpilot" the arguments are ContainerPilot 3's (no subcommands,
// -version prints ContainerPilot's two lines); otherwise autopilot's.
func RunAs(ctx context.Context, argv0 string, args []string, stdout, stderr io.Writer) int {
	switch filepath.Base(argv0) {
	case ContainerPilotName:
		return runSupervisorAs(ctx, ContainerPilotName, args, stdout, stderr)
	case ConsulTemplateName:
		return runConsulTemplate(ctx, args, stdout, stderr)
	}
	return Run(ctx, args, stdout, stderr)
}

// pairs is a repeatable KEY=VALUE flag (ContainerPilot's MultiFlag); the
// last value of a key wins, as there.
type pairs map[string]string

func (p pairs) String() string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k+"="+p[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (p pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	p[k] = v
	return nil
}

// controlFlags are ContainerPilot 3's one-shot commands; both names of the
// binary accept them.
type controlFlags struct {
	version     bool
	template    bool
	out         string
	reload      bool
	maintenance string
	putenv      pairs
	putmetric   pairs
	ping        bool
	socket      string
}

func (c *controlFlags) register(fs *flag.FlagSet) {
	c.putenv, c.putmetric = pairs{}, pairs{}
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.BoolVar(&c.template, "template", false, "print the config after interpolation and exit (to -out)")
	fs.StringVar(&c.out, "out", "", "with -template: write to `FILE` instead of stdout ('-')")
	fs.BoolVar(&c.reload, "reload", false, "tell the running autopilot to reload its config")
	fs.StringVar(&c.maintenance, "maintenance", "", "`enable|disable` maintenance mode of the running autopilot")
	fs.Var(c.putenv, "putenv", "set `KEY=VALUE` in the environment of jobs the running autopilot starts (repeatable)")
	fs.Var(c.putmetric, "putmetric", "record `NAME=VALUE` for a declared metric of the running autopilot (repeatable)")
	fs.BoolVar(&c.ping, "ping", false, "check that the running autopilot answers on its control socket")
	fs.StringVar(&c.socket, "socket", "", "control socket `PATH` (default: the config's control.socket, else "+config.DefaultControlSocket+")")
}

// command reports whether a one-shot command was asked for.
func (c *controlFlags) command() bool {
	return c.version || c.template || c.reload || c.maintenance != "" || len(c.putenv) > 0 || len(c.putmetric) > 0 || c.ping
}

// controlTimeout bounds a control command; a reload may wait for the new
// generation's first render.
const controlTimeout = 2 * time.Minute

// runControl runs the one-shot command of c, as ContainerPilot's
// subcommands do, in the same order of precedence.
func runControl(ctx context.Context, name, spec string, c *controlFlags, stdout, stderr io.Writer) int {
	if c.version {
		if name == ContainerPilotName {
			fmt.Fprintf(stdout, "Version: %s\nGitHash: %s\n", Version, "autopilot")
		} else {
			fmt.Fprintf(stdout, "autopilot %s\n", Version)
		}
		return exitOK
	}
	if c.template {
		return runTemplate(name, spec, c.out, stdout, stderr)
	}
	if c.maintenance != "" && c.maintenance != "enable" && c.maintenance != "disable" {
		fmt.Fprintf(stderr, "%s: -maintenance %q: want enable or disable\n", name, c.maintenance)
		return exitUsage
	}
	for k, v := range c.putenv {
		if err := control.ValidEnv(k, v); err != nil {
			fmt.Fprintf(stderr, "%s: -putenv: %v\n", name, err)
			return exitUsage
		}
	}
	for k, v := range c.putmetric {
		if _, err := control.ParseValue(v); err != nil {
			fmt.Fprintf(stderr, "%s: -putmetric %s: %v\n", name, k, err)
			return exitUsage
		}
	}
	socket, err := controlSocket(c.socket, spec)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	cl := control.NewClient(socket)
	var what string
	switch {
	case c.reload:
		what, err = "-reload", cl.Reload(ctx)
	case c.maintenance != "":
		what, err = "-maintenance", cl.SetMaintenance(ctx, c.maintenance == "enable")
	case len(c.putenv) > 0:
		what, err = "-putenv", cl.PutEnv(ctx, c.putenv)
	case len(c.putmetric) > 0:
		what, err = "-putmetric", cl.PutMetric(ctx, c.putmetric)
	default:
		what, err = "-ping", cl.Ping(ctx)
		if err == nil {
			fmt.Fprintln(stdout, "ok")
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %v\n", name, what, err)
		return exitError
	}
	return exitOK
}

// controlSocket is the socket to talk to: the flag, else the config's
// control.socket, else ContainerPilot's default. A config that does not
// load is an error, as in ContainerPilot: guessing could steer another
// process.
func controlSocket(flagValue, spec string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if spec == "" {
		return config.DefaultControlSocket, nil
	}
	cfg, err := config.Load(spec, os.LookupEnv)
	if err != nil {
		return "", fmt.Errorf("finding the control socket: %w", err)
	}
	return cfg.Control.Socket, nil
}

// runTemplate prints the config text after interpolation (-template), to
// out when set and not "-".
func runTemplate(name, spec, out string, stdout, stderr io.Writer) int {
	if spec == "" {
		fmt.Fprintf(stderr, "%s: -template needs -config (or $%s)\n", name, strings.ToUpper(name))
		return exitUsage
	}
	data, src, err := readSpec(spec)
	if err != nil {
		fmt.Fprintf(stderr, "%s: -template: %v\n", name, err)
		return exitUsage
	}
	text, err := config.Render(data, src, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "%s: -template: %v\n", name, err)
		return exitUsage
	}
	if out == "" || out == "-" {
		_, err = stdout.Write(text)
	} else {
		err = os.WriteFile(out, text, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: -template: %v\n", name, err)
		return exitError
	}
	return exitOK
}

// readSpec returns a config spec's text and its name, as config.Load reads
// it: inline text starting with "{", else a path or file://PATH.
func readSpec(spec string) ([]byte, string, error) {
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "{") {
		return []byte(trimmed), "inline config", nil
	}
	path := strings.TrimPrefix(trimmed, "file://")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	return data, path, nil
}
