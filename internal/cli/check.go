package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/autopilot/autopilot/internal/telemetry"
	"github.com/autopilot/autopilot/render"
	"github.com/autopilot/autopilot/supervisor/config"
)

const checkUsage = `Usage: autopilot check [-config FILE] [-explain] [-- COMMAND [ARGS...]]

Validates a config in any dialect (ContainerPilot 2 JSON, ContainerPilot 3
JSON5, autopilot's own) and its templates; runs nothing. The config comes
from -config, else $AUTOPILOT, else $CONTAINERPILOT. -explain prints the
jobs, watches and templates the config became; a COMMAND is the app given
on the command line (see README, "Config dialects").
`

// runCheck validates a config and its templates without running anything.
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("autopilot check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spec := fs.String("config", "", "config `FILE`, file://FILE or inline text (default $AUTOPILOT, else $CONTAINERPILOT)")
	explain := fs.Bool("explain", false, "print the jobs, watches and templates the config became")
	fs.String("consul", "", "accepted for symmetry with the supervisor; not used")
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *spec == "" {
		*spec = os.Getenv("AUTOPILOT")
	}
	if *spec == "" {
		*spec = os.Getenv("CONTAINERPILOT")
	}
	if *spec == "" {
		fmt.Fprintln(stderr, "autopilot check: -config FILE is required (or $AUTOPILOT, $CONTAINERPILOT)")
		return exitUsage
	}
	cfg, err := config.Load(*spec, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "autopilot check: %v\n", err)
		return exitUsage
	}
	if argv := fs.Args(); len(argv) > 0 {
		if cfg, err = cfg.WithApp(argv); err != nil {
			fmt.Fprintf(stderr, "autopilot check: %v\n", err)
			return exitUsage
		}
	}
	for i, t := range cfg.Templates {
		if _, err := render.ParseFile(t.Source, render.Options{MinInstances: t.MinInstances}); err != nil {
			fmt.Fprintf(stderr, "autopilot check: %s: templates[%d]: %v\n", cfg.Name, i, err)
			return exitUsage
		}
	}
	// Two templates writing one file (after resolving symlinks) would
	// overwrite each other; the supervisor refuses them at start, so check does too.
	dests := make([]render.Config, len(cfg.Templates))
	for i, t := range cfg.Templates {
		dests[i] = render.Config{Source: t.Source, Destination: t.Destination}
	}
	if err := render.CheckDestinations(dests); err != nil {
		fmt.Fprintf(stderr, "autopilot check: %s: %v\n", cfg.Name, err)
		return exitUsage
	}
	// The user's metrics: names the telemetry endpoint refuses at start.
	if cfg.Telemetry != nil {
		if _, err := telemetry.NewUserMetrics(cfg.Telemetry.Metrics); err != nil {
			fmt.Fprintf(stderr, "autopilot check: %s: %v\n", cfg.Name, err)
			return exitUsage
		}
	}
	if *explain {
		if err := cfg.Explain(stdout); err != nil {
			return exitError
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "OK %s: %s config, %d jobs, %d watches, %d templates\n", cfg.Name, cfg.Dialect, len(cfg.Jobs), len(cfg.Watches), len(cfg.Templates))
	return exitOK
}
