package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/autopilot/autopilot/internal/control"
	"github.com/autopilot/autopilot/internal/telemetry"
)

// runStatus prints a running autopilot's status: from its control socket by
// default, or from a telemetry endpoint's /status with -url.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("autopilot status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgSpec := fs.String("config", "", "config `FILE` naming the control socket (default $AUTOPILOT, else $CONTAINERPILOT)")
	socket := fs.String("socket", "", "control socket `PATH` (default: the config's control.socket)")
	url := fs.String("url", "", "read `URL`/status of a telemetry endpoint instead (e.g. http://10.0.0.5:9090)")
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "autopilot status: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var (
		s   telemetry.Snapshot
		err error
	)
	if *url != "" {
		s, err = fetchStatus(ctx, strings.TrimSuffix(*url, "/")+"/status")
	} else {
		spec := *cfgSpec
		if spec == "" {
			spec = os.Getenv("AUTOPILOT")
		}
		if spec == "" {
			spec = os.Getenv("CONTAINERPILOT")
		}
		var path string
		if path, err = controlSocket(*socket, spec); err != nil {
			fmt.Fprintf(stderr, "autopilot status: %v\n", err)
			return exitUsage
		}
		s, err = control.NewClient(path).Status(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "autopilot status: %v\n", err)
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
		return exitOK
	}
	printStatus(stdout, s, time.Now())
	return exitOK
}

func fetchStatus(ctx context.Context, url string) (telemetry.Snapshot, error) {
	var s telemetry.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("GET %s: %w", url, err)
	}
	return s, nil
}

// printStatus writes s as tables for people; `-json` is for programs.
func printStatus(w io.Writer, s telemetry.Snapshot, now time.Time) {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	dash := func(v string) string {
		if v == "" {
			return "-"
		}
		return v
	}
	consul := "unreachable"
	if s.Consul.Reachable {
		consul = "reachable"
	}
	fmt.Fprintf(w, "autopilot %s  config %s (generation %d)  consul %s %s\n", s.Version, dash(s.Config.File), s.Config.Generation, dash(s.Consul.Address), consul)
	if s.Config.LastReloadError != "" {
		fmt.Fprintf(w, "last reload refused: %s\n", s.Config.LastReloadError)
	}
	if s.Consul.LastError != "" {
		fmt.Fprintf(w, "last Consul error: %s\n", s.Consul.LastError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title string, header string) {
		tw.Flush()
		fmt.Fprintf(w, "\n%s\n", title)
		fmt.Fprintln(tw, header)
	}
	if len(s.Jobs) > 0 {
		section("JOBS", "NAME\tSTATE\tPID\tSTARTS\tRESTARTS\tLAST EXIT\tHEALTH")
		for _, j := range s.Jobs {
			pid, exit, health := "-", "-", "-"
			if j.PID > 0 {
				pid = fmt.Sprint(j.PID)
			}
			if e := j.LastExit; e != nil {
				exit = strconv.Itoa(e.Code)
			}
			if h := j.Health; h != nil {
				health = fmt.Sprintf("%s (%d/%d failed)", dash(h.Status), h.Failures, h.Runs)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", j.Name, dash(j.State), pid, j.Starts, j.Restarts, exit, health)
		}
	}
	if len(s.Services) > 0 {
		section("SERVICES", "ID\tNAME\tADDRESS\tHEALTH\tMAINTENANCE\tREGISTERED")
		for _, v := range s.Services {
			fmt.Fprintf(tw, "%s\t%s\t%s:%d\t%s\t%v\t%v\n", v.ID, v.Name, v.Address, v.Port, dash(v.Health), v.Maintenance, v.Registered)
		}
	}
	if len(s.Watches) > 0 {
		section("WATCHES", "QUERY\tINSTANCES\tLAST CHANGE\tERRORS\tLAST ERROR")
		for _, v := range s.Watches {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", v.Query, v.Instances, ago(v.LastChange), v.Errors, dash(oneLine(v.LastError)))
		}
	}
	if len(s.Templates) > 0 {
		section("TEMPLATES", "DESTINATION\tLAST WRITE\tWRITES\tCHECK\tRELOAD\tMISSING")
		for _, v := range s.Templates {
			missing := "-"
			if len(v.Missing) > 0 {
				missing = fmt.Sprintf("%s for %s", strings.Join(v.Missing, ", "), now.Sub(v.MissingSince).Round(time.Second))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", v.Destination, ago(v.LastWrite), v.Writes, outcome(v.LastCheck), outcome(v.LastReload), missing)
		}
	}
	tw.Flush()
}

func outcome(o *telemetry.Outcome) string {
	switch {
	case o == nil:
		return "-"
	case o.OK:
		return "ok"
	}
	return "FAILED: " + oneLine(o.Output)
}

// oneLine keeps a table row on one line: the last line of s, bounded.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 80 {
		s = "…" + s[len(s)-79:]
	}
	return s
}
