// Command autopilot runs an app on autopilot (as PID 1 in its container) or,
// with the render subcommand, renders consul-template templates from Consul.
package main

import (
	"context"
	"os"

	"github.com/autopilot/autopilot/internal/cli"
)

func main() {
	os.Exit(cli.RunAs(context.Background(), os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}
