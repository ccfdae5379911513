// Package cli is autopilot's command line: it parses arguments, builds the
// renderer or the supervisor, and turns their outcome into an exit code.
// main stays a one-liner so tests can drive the whole CLI in-process.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0
	exitError = 1 // the work failed (render error, timeout)
	exitUsage = 2 // bad flags or configuration
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Run runs autopilot with args (without the program name) and returns the
// process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "render":
			return runRender(ctx, args[1:], stdout, stderr)
		case "check":
			return runCheck(ctx, args[1:], stdout, stderr)
		case "status":
			return runStatus(ctx, args[1:], stdout, stderr)
		case "version":
			fmt.Fprintf(stdout, "autopilot %s\n", Version)
			return exitOK
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage)
			return exitOK
		}
	}
	return runSupervisor(ctx, args, stdout, stderr)
}

const usage = `autopilot: run an app on autopilot, or render templates from Consul.

Usage:
  autopilot [-config FILE] [--] COMMAND [ARGS...]   supervise COMMAND (as PID 1)
  autopilot check -config FILE                      validate a config and its templates
  autopilot status [-url URL] [-json]               show a running autopilot's jobs, services, watches, templates
  autopilot -reload | -maintenance enable|disable | -putenv K=V | -putmetric NAME=VALUE | -ping
                                                    steer a running autopilot through its control socket
  autopilot -template [-out FILE]                   print the config after interpolation
  autopilot render [flags] -template SRC[:DEST[:CMD]] ...
                                                    render templates (consul-template replacement)
  autopilot version

Run 'autopilot render -h' for the render flags.
`

// consoleLogger is the human-readable logger of the CLI commands.
func consoleLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	noColor := true
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			noColor = false
		}
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: noColor}).Level(lvl).With().Timestamp().Logger(), nil
}

// lockedWriter serialises writes from the logger's goroutines and the
// command's own messages to one writer (a bytes.Buffer in tests).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
