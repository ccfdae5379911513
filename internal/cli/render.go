package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/ctconfig"
	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/fixture"
	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
)

// templateFlags collects repeated -template SRC[:DEST[:COMMAND]] values.
type templateFlags []string

func (t *templateFlags) String() string     { return strings.Join(*t, ",") }
func (t *templateFlags) Set(s string) error { *t = append(*t, s); return nil }

// parseTemplateSpec splits consul-template's source:destination:command.
// The command is split on whitespace with no shell, like every command in
// autopilot; wrap it in `sh -c` yourself if you need one.
func parseTemplateSpec(s string, commands *proc.Runner) (render.Config, error) {
	parts := strings.SplitN(s, ":", 3)
	c := render.Config{Source: parts[0]}
	if c.Source == "" {
		return c, fmt.Errorf("-template %q: missing source", s)
	}
	if len(parts) > 1 {
		c.Destination = parts[1]
	}
	if len(parts) > 2 && strings.TrimSpace(parts[2]) != "" {
		cmd, err := proc.ParseCommand(parts[2])
		if err != nil {
			return c, fmt.Errorf("-template %q: command: %w", s, err)
		}
		c.Command, c.CommandName = commands.OutputFunc(cmd), cmd.String()
	}
	return c, nil
}

func runRender(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr}
	fs := flag.NewFlagSet("autopilot render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		templates    templateFlags
		consulAddr   = fs.String("consul", "", "Consul HTTP address (host:port or https://host:port); default $CONSUL_HTTP_ADDR or 127.0.0.1:8500")
		data         = fs.String("data", "", "render from this JSON fixture instead of Consul")
		snapshot     = fs.String("snapshot", "", "write a fixture of the live Consul's services, KV and nodes to this file and exit")
		once         = fs.Bool("once", false, "render once all data is present, then exit")
		dryRun       = fs.Bool("dry-run", false, "print the rendered output instead of writing files or running commands")
		diff         = fs.Bool("diff", false, "print a unified diff against each destination instead of writing it")
		watchTmpl    = fs.Bool("watch-templates", false, "re-render when a template file changes")
		wait         = fs.String("wait", "", "quiescence MIN[:MAX] before re-rendering after a change, e.g. 200ms:1s")
		timeout      = fs.Duration("timeout", 30*time.Second, "with -once: how long to wait for all data")
		strict       = fs.Bool("strict", false, "a missing map key is an error (default: renders \"<no value>\", as consul-template)")
		minInstances = fs.Int("min-instances", 0, "treat a service with fewer healthy instances as missing data (keep the last good file)")
		stale        = fs.Bool("stale", false, "allow stale reads from any Consul server")
		cached       = fs.Bool("cached", false, "read services and health through the local agent's cache (?cached): many renderers on one client agent cost the servers one query")
		splay        = fs.Duration("splay", 0, "delay each template's command by a random time up to this, so a fleet does not reload in lockstep")
		logLevel     = fs.String("log-level", "info", "debug, info, warn or error")
		hxRuntime    = fs.String("haproxy-runtime", "", "HAProxy stats socket (level admin): apply changes to backend servers through the runtime API, without a reload")
		hxMaster     = fs.String("haproxy-master", "", "HAProxy master CLI socket (haproxy -W -S): confirm each reload, retry a missed one; without a COMMAND, reload through it")
		hxDrain      = fs.Duration("haproxy-drain", haproxy.DefaultDrain, "with -haproxy-runtime: how long a removed server keeps its sessions before it is deleted")
		configs      templateFlags
	)
	fs.Var(&templates, "template", "SRC[:DEST[:COMMAND]] (repeatable)")
	fs.Var(&configs, "config", "consul-template config file (HCL or JSON) or directory (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: autopilot render [flags] -template SRC[:DEST[:COMMAND]] ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	log, err := consoleLogger(stderr, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "autopilot render: %v\n", err)
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "autopilot render: "+format+"\n", a...)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *snapshot != "" {
		return writeSnapshot(ctx, *consulAddr, *snapshot, stderr)
	}
	var ct *ctconfig.Config
	var maxStale time.Duration // a consul-template config's max_stale
	if len(configs) > 0 {
		if ct, err = renderCTConfig(configs); err != nil {
			return usageErr("%v", err)
		}
		if *consulAddr == "" && ct.Consul.Address != nil {
			*consulAddr = *ct.Consul.Address
		} else if *consulAddr != "" {
			ct.Consul.Address = consulAddr // the flag wins, for the client and for CONSUL_HTTP_ADDR in commands
		}
		if ct.MaxStale != nil && *ct.MaxStale > 0 {
			*stale, maxStale = true, *ct.MaxStale
		}
		levelSet := false
		fs.Visit(func(f *flag.Flag) { levelSet = levelSet || f.Name == "log-level" })
		if ct.LogLevel != nil && !levelSet {
			if log, err = consoleLogger(stderr, ctconfig.ZerologLevel(*ct.LogLevel)); err != nil {
				return usageErr("%v", err)
			}
		}
		for _, w := range ct.Warnings {
			log.Warn().Msg(w)
		}
		if ct.Consul.Retry.Given() {
			log.Warn().Msg("consul.retry is not used by autopilot render: it retries Consul until -timeout with -once, forever without; the consul-template name honours it")
		}
	}
	if len(templates) == 0 && (ct == nil || len(ct.Templates) == 0) {
		return usageErr("no -template given")
	}
	if *dryRun && *diff {
		return usageErr("-dry-run and -diff exclude each other")
	}
	w, err := render.ParseWait(*wait)
	if err != nil {
		return usageErr("%v", err)
	}
	commands := &proc.Runner{Stdout: stderr, Stderr: stderr}
	var cfgs []render.Config
	for _, spec := range templates {
		c, err := parseTemplateSpec(spec, commands)
		if err != nil {
			return usageErr("%v", err)
		}
		if c.Destination == "" && !*dryRun {
			return usageErr("-template %q: no destination (only -dry-run can do without one)", spec)
		}
		c.Wait = w
		if *splay < 0 {
			return usageErr("-splay %s: want a positive duration", *splay)
		}
		c.Splay = *splay
		c.Options = render.Options{Strict: *strict, MinInstances: *minInstances}
		cfgs = append(cfgs, c)
	}
	if ct != nil {
		childEnv := ct.ChildEnv(os.Getenv)
		for _, t := range ct.Templates {
			if t.Destination == "" && !*dryRun {
				return usageErr("%s: template: destination is required (only -dry-run can do without one)", t.At)
			}
			c, err := renderConfig(ct, t, stderr, stderr, childEnv)
			if err != nil {
				return usageErr("%v", err)
			}
			if *wait != "" {
				c.Wait = w // the flag wins over the file, as in consul-template
			}
			c.Strict = c.Strict || *strict
			c.MinInstances = *minInstances
			cfgs = append(cfgs, c)
		}
	}
	if *hxDrain <= 0 {
		return usageErr("-haproxy-drain %v: want a positive duration", *hxDrain)
	}
	for i := range cfgs {
		closeHX := withHAProxy(&cfgs[i], *hxRuntime, *hxMaster, *hxDrain, log)
		defer closeHX()
	}

	var src dep.Source
	var copts consul.ClientOptions
	if ct != nil {
		_, copts, err = consulOptions(ct.Consul)
		if err != nil {
			return usageErr("%v", err)
		}
	}
	if *data != "" {
		snap, err := fixture.Load(*data)
		if err != nil {
			return usageErr("%v", err)
		}
		src = snap.Source()
	} else {
		client, err := consul.NewClientWithOptions(*consulAddr, copts)
		if err != nil {
			return usageErr("%v", err)
		}
		wopts := consul.WatchOptions{Stale: *stale, MaxStale: maxStale, Cached: *cached}
		if ct != nil && ct.BlockQueryWait != nil {
			wopts.WaitTime = *ct.BlockQueryWait // 0 keeps Consul's default
		}
		watcher := consul.NewWatcher(ctx, client, wopts, log)
		defer watcher.Close()
		src = watcher
	}

	mode := render.ModeWrite
	switch {
	case *dryRun:
		mode = render.ModeDryRun
	case *diff:
		mode = render.ModeDiff
	}
	r, err := render.NewRunner(src, cfgs, render.RunnerOptions{
		Mode: mode, Out: stdout, WatchTemplates: *watchTmpl, Log: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "autopilot render: %v\n", err)
		return exitError
	}
	if *once {
		octx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if err := r.Once(octx); err != nil {
			fmt.Fprintf(stderr, "autopilot render: %v\n", err)
			return exitError
		}
		return exitOK
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "autopilot render: %v\n", err)
		return exitError
	}
	return exitOK
}

// withHAProxy gives a template the HAProxy hooks its flags ask for: Apply
// through the runtime API at runtimeSock, and reloads confirmed on the
// master CLI at masterSock, triggered by the template's command (or by the
// master CLI's `reload` when it has none). It returns what stops the
// background deletions of drained servers.
func withHAProxy(c *render.Config, runtimeSock, masterSock string, drain time.Duration, log zerolog.Logger) func() {
	log = log.With().Str("template", c.Source).Logger()
	stop := func() {}
	if runtimeSock != "" {
		rt := haproxy.NewRuntime(haproxy.RuntimeOptions{Socket: runtimeSock, Drain: drain, Log: log})
		c.Apply, stop = rt.Apply, rt.Close
	}
	if masterSock != "" {
		var trigger func(context.Context) error
		if cmd, name := c.Command, c.CommandName; cmd != nil {
			trigger = func(ctx context.Context) error {
				out, err := cmd(ctx)
				if err != nil {
					return fmt.Errorf("command %q: %w: %s", name, err, bytes.TrimSpace(out))
				}
				return nil
			}
			c.Command, c.CommandName = nil, ""
		}
		rl := haproxy.NewReloader(haproxy.ReloaderOptions{Master: masterSock, Trigger: trigger, Log: log})
		c.Reload = func(ctx context.Context) error {
			err := rl.Reload(ctx)
			var de *haproxy.DialError
			switch {
			case !errors.As(err, &de):
				return err
			case trigger != nil:
				log.Warn().Err(err).Msg("HAProxy master CLI unreachable: running the reload command unconfirmed")
				return trigger(ctx)
			default:
				log.Warn().Err(err).Msg("HAProxy master CLI unreachable: not reloaded (HAProxy reads the file when it starts)")
				return nil
			}
		}
	}
	return stop
}

// renderCTConfig reads consul-template config files for `autopilot render
// -config`. render honours what a renderer has (consul, template, wait,
// log_level, max_stale, default_delimiters) and refuses by name what only
// a process manager has, pointing at the consul-template name.
func renderCTConfig(paths []string) (*ctconfig.Config, error) {
	c := &ctconfig.Config{}
	for _, p := range paths {
		sub, err := ctconfig.FromPath(p)
		if err != nil {
			return nil, err
		}
		c.Merge(sub)
	}
	const why = "not supported by autopilot render; run autopilot as consul-template (a consul-template symlink) for it"
	switch {
	case c.Exec != nil:
		return nil, fmt.Errorf("exec: %s", why)
	case c.KillSignal != nil:
		return nil, fmt.Errorf("kill_signal: %s", why)
	case c.ReloadSignal != nil:
		return nil, fmt.Errorf("reload_signal: %s", why)
	case c.PidFile != nil:
		return nil, fmt.Errorf("pid_file: %s", why)
	}
	c.Dry = true // destinations are checked by render, which knows -dry-run
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// writeSnapshot captures the live Consul into a fixture file.
func writeSnapshot(ctx context.Context, addr, path string, stderr io.Writer) int {
	client, err := consul.NewClient(addr)
	if err != nil {
		fmt.Fprintf(stderr, "autopilot render: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	snap, err := fixture.Capture(ctx, client.API())
	if err != nil {
		fmt.Fprintf(stderr, "autopilot render: snapshot: %v\n", err)
		return exitError
	}
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "autopilot render: snapshot: %v\n", err)
		return exitError
	}
	if err := render.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		fmt.Fprintf(stderr, "autopilot render: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stderr, "autopilot render: wrote snapshot to %s (it holds KV values: treat it as sensitive)\n", path)
	return exitOK
}
