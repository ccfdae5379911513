package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/supervisor"
	"github.com/autopilot/autopilot/supervisor/config"
)

// superviseFlags are the flags of `autopilot [flags] [--] COMMAND [ARGS...]`
// and `autopilot check`.
type superviseFlags struct {
	config string
	consul string
	ctl    controlFlags // ContainerPilot's one-shot commands (-reload, -putmetric…)
}

func parseSuperviseFlags(name string, args []string, stderr io.Writer) (*superviseFlags, []string, error) {
	f := &superviseFlags{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "config `FILE`, file://FILE or inline JSON (default $AUTOPILOT, else $CONTAINERPILOT)")
	fs.StringVar(&f.consul, "consul", "", "Consul `ADDR`, overriding the config's consul")
	f.ctl.register(fs)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if f.config == "" {
		f.config = os.Getenv("AUTOPILOT")
	}
	if f.config == "" {
		f.config = os.Getenv("CONTAINERPILOT")
	}
	return f, fs.Args(), nil
}

// loadConfig loads the config named by spec (any dialect) and gives it argv
// as its Main job (see config.WithApp); no spec is an empty config
// (autopilot then is a plain init: reaping, signals, exit codes).
func loadConfig(spec string, argv []string) (*config.Config, error) {
	var c *config.Config
	var err error
	if spec == "" {
		wd, _ := os.Getwd()
		c, err = config.ParseDir([]byte("{}"), "empty config", wd, os.LookupEnv)
	} else {
		c, err = config.Load(spec, os.LookupEnv)
	}
	if err != nil {
		return nil, err
	}
	return c.WithApp(argv)
}

// runSupervisor runs the config's jobs under the supervisor. A command on
// the command line is the config's Main job: its exit ends the run and
// gives autopilot's exit code (see supervisor.Run).
func runSupervisor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runSupervisorAs(ctx, "autopilot", args, stdout, stderr)
}

// runSupervisorAs is runSupervisor for the binary invoked as name
// (autopilot or containerpilot): a one-shot control command when one of
// ContainerPilot's command flags is given, the supervisor otherwise.
func runSupervisorAs(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f, argv, err := parseSuperviseFlags(name, args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if f.ctl.command() {
		if len(argv) > 0 {
			fmt.Fprintf(stderr, "%s: unexpected arguments %q after a command flag\n", name, argv)
			return exitUsage
		}
		return runControl(ctx, name, f.config, &f.ctl, stdout, stderr)
	}
	// Enabling the signals takes a few round trips to the runtime's signal
	// thread: done while the config loads.
	catcher := supervisor.CatchSignals()
	defer catcher.Stop()
	model, err := loadConfig(f.config, argv)
	if err != nil {
		fmt.Fprintf(stderr, "autopilot: %v\n", err)
		return exitUsage
	}
	if !hasProcess(model) {
		fmt.Fprintln(stderr, "autopilot: no command to run")
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	// Logs to a broken pipe are dropped rather than fatal (see supervisor.DropEPIPE).
	logOut := stderr
	if model.Logging.Output == "stdout" {
		logOut = stdout
	}
	log, err := supervisorLogger(supervisor.DropEPIPE(logOut), model.Logging)
	if err != nil {
		fmt.Fprintf(stderr, "autopilot: %v\n", err)
		return exitUsage
	}
	tuneGC()
	opts := supervisor.Options{Consul: f.consul, Stdout: stdout, Stderr: stderr, Log: log, Catcher: catcher}
	if f.config != "" {
		spec := f.config
		opts.Load = func() (*config.Config, error) { return loadConfig(spec, argv) }
	}
	return runObserved(ctx, name, model, opts, stderr)
}

// hasProcess reports whether cfg has a job that runs a process.
func hasProcess(cfg *config.Config) bool {
	for _, j := range cfg.Jobs {
		if !j.Exec.IsZero() {
			return true
		}
	}
	return false
}

// supervisorLogger is JSON on w by default, or console text.
func supervisorLogger(w io.Writer, l config.Logging) (zerolog.Logger, error) {
	if l.Format == "text" {
		return consoleLogger(w, l.Level)
	}
	lvl, err := zerolog.ParseLevel(l.Level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("log level %q: %w", l.Level, err)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("component", "autopilot").Logger(), nil
}
