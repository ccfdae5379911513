package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/ctconfig"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
)

// ConsulTemplateName is the program name under which autopilot behaves as
// consul-template v0.42.1 (a /usr/local/bin/consul-template symlink): its
// flags, its config files and its exit codes, so scripts and ContainerPilot
// configs that call consul-template run unchanged.
const ConsulTemplateName = "consul-template"

// consul-template's exit codes (its cli.go: 10 + iota, from the second line).
const (
	ctExitOK          = 0
	ctExitError       = 11
	ctExitInterrupt   = 12
	ctExitParseFlags  = 13
	ctExitRunnerError = 14
	ctExitConfigError = 15
)

// ctVersion is what -version prints: the consul-template version whose
// behaviour this personality reproduces, and autopilot's own.
func ctVersion() string { return "consul-template v0.42.1 (autopilot " + Version + ")" }

const ctUsage = `Usage: consul-template [options]

  autopilot running as consul-template: watches templates and renders them
  from Consul with consul-template's flags, config files and exit codes.

Options (consul-template's; Vault, Nomad, dedup, syslog and log files are
refused with the reason):

  -config=<path>            config file or directory (repeatable; HCL or JSON)
  -consul-addr=<address>    Consul address (also the old -consul)
  -consul-token=<token>     ACL token (also -consul-token-file)
  -consul-ssl, -consul-ssl-verify, -consul-ssl-ca-cert, -consul-ssl-ca-path,
  -consul-ssl-cert, -consul-ssl-key, -consul-ssl-server-name
  -consul-retry, -consul-retry-attempts (default 12; 0 = no limit, then exit 14),
  -consul-retry-backoff (default 250ms), -consul-retry-max-backoff (default 1m)
  -consul-auth=<user[:pass]> HTTP basic auth to Consul
  -consul-transport-dial-keep-alive, -consul-transport-dial-timeout,
  -consul-transport-disable-keep-alives, -consul-transport-max-idle-conns-per-host,
  -consul-transport-tls-handshake-timeout
  -template=<src[:dest[:command]]>   (repeatable)
  -once                     render once, run the commands, exit
  -dry                      print "> DEST" and the contents to stdout; write nothing
  -wait=<min[:max]>         quiescence before rendering
  -max-stale=<duration>     allow stale reads (default 2s; 0 = consistent reads)
  -exec=<command>           run a child process; signal or restart it on change
  -exec-kill-signal, -exec-kill-timeout, -exec-reload-signal, -exec-splay,
  -exec-env-pristine, -exec-env-custom, -exec-env-allowlist, -exec-env-denylist
  -kill-signal=<signal>     exit on this signal (default SIGINT; SIGTERM also exits)
  -reload-signal=<signal>   reload the config files (default SIGHUP)
  -log-level=<level>        trace, debug, info, warn, err
  -default-left-delimiter, -default-right-delimiter
  -pid-file=<path>, -parse-only, -v, -version
`

// runConsulTemplate is autopilot invoked as consul-template.
func runConsulTemplate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr}
	fl, err := ctconfig.ParseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, ctUsage)
			return ctExitOK
		}
		fmt.Fprintf(stderr, "consul-template: %v\n", err)
		return ctExitParseFlags
	}
	if fl.Version {
		fmt.Fprintln(stdout, ctVersion())
		return ctExitOK
	}
	cfg, err := loadCTConfig(fl)
	if err != nil {
		fmt.Fprintf(stderr, "consul-template: %v\n", err)
		return ctExitConfigError
	}
	level := "info"
	if cfg.LogLevel != nil {
		level = ctconfig.ZerologLevel(*cfg.LogLevel)
	}
	log, err := consoleLogger(stderr, level)
	if err != nil {
		fmt.Fprintf(stderr, "consul-template: %v\n", err)
		return ctExitConfigError
	}
	for _, w := range cfg.Warnings {
		log.Warn().Msg(w)
	}
	if fl.ParseOnly {
		for _, t := range cfg.Templates {
			rc, err := renderConfig(cfg, t, stdout, stderr, nil)
			if err == nil {
				err = parseOnly(rc)
			}
			if err != nil {
				fmt.Fprintf(stderr, "consul-template: %v\n", err)
				return ctExitConfigError
			}
		}
		return ctExitOK
	}
	if cfg.PidFile != nil && *cfg.PidFile != "" {
		if err := render.WriteFile(*cfg.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "consul-template: pid_file: %v\n", err)
			return ctExitConfigError
		}
		defer os.Remove(*cfg.PidFile)
	}
	return (&ctRun{flags: fl, cfg: cfg, log: log, stdout: stdout, stderr: stderr}).run(ctx)
}

// loadCTConfig merges the -config paths in order, then the flags.
func loadCTConfig(fl *ctconfig.Flags) (*ctconfig.Config, error) {
	cfg := &ctconfig.Config{}
	for _, p := range fl.ConfigPaths {
		c, err := ctconfig.FromPath(p)
		if err != nil {
			return nil, err
		}
		cfg.Merge(c)
	}
	cfg.Merge(fl.Config)
	if len(cfg.Templates) == 0 && !cfg.ExecEnabled() {
		return nil, errors.New("no templates given (use -template SRC:DEST[:COMMAND] or a template block in -config)")
	}
	return cfg, cfg.Validate()
}

func parseOnly(rc render.Config) error {
	if rc.Contents != "" {
		_, err := render.Parse(rc.Source, rc.Contents, rc.Options)
		return err
	}
	_, err := render.ParseFile(rc.Source, rc.Options)
	return err
}

// renderConfig turns one consul-template template into render's Config.
// childEnv is added to its command's environment (after the template's env
// block filters autopilot's) and seen first by its env functions.
func renderConfig(cfg *ctconfig.Config, t *ctconfig.Template, stdout, stderr io.Writer, childEnv []string) (render.Config, error) {
	rc := render.Config{Source: t.Source, Destination: t.Destination, Contents: t.Contents,
		Backup: t.Backup, CreateDestDirs: true, CommandTimeout: 30 * time.Second}
	if rc.Source == "" {
		rc.Source = "(contents of template at " + t.At + ")"
	}
	if t.CreateDestDirs != nil {
		rc.CreateDestDirs = *t.CreateDestDirs
	}
	if t.CommandTimeout != nil {
		rc.CommandTimeout = *t.CommandTimeout
	}
	if t.Perms != nil {
		rc.Perms = *t.Perms
	}
	w := cfg.Wait
	if t.Wait != nil {
		w = t.Wait
	}
	if w != nil && !w.Disabled {
		rc.Wait = render.Wait{Min: w.Min, Max: w.Max}
	}
	rc.Options = render.Options{Strict: t.ErrorOnMissingKey, LeftDelim: t.LeftDelim, RightDelim: t.RightDelim, Env: childEnv,
		FunctionDenylist: t.FunctionDenylist, SandboxPath: t.SandboxPath}
	if rc.LeftDelim == "" && cfg.LeftDelim != nil {
		rc.LeftDelim = *cfg.LeftDelim
	}
	if rc.RightDelim == "" && cfg.RightDelim != nil {
		rc.RightDelim = *cfg.RightDelim
	}
	if !cfg.ErrorFatal(t) {
		rc.ExecuteErrors = render.ErrorsLogged
	}
	commands := &proc.Runner{Stdout: stdout, Stderr: stderr, Pristine: true,
		Env: t.CommandEnv.Environ(os.Environ(), childEnv)}
	rc.Command, rc.CommandName = commands.OutputFunc(ctCommand(t.Command)), strings.Join(t.Command, " ")
	if t.User != "" || t.Group != "" {
		uid, gid, err := lookupOwner(t.User, t.Group)
		if err != nil {
			return rc, fmt.Errorf("%s: template: %w", t.At, err)
		}
		rc.UID, rc.GID, rc.Owner = uid, gid, true
	}
	return rc, nil
}

// ctCommand follows consul-template's rule: one string with several words
// runs under sh -c (so `nginx -s reload || true` works as it did there);
// a single word or a list runs as argv.
func ctCommand(c []string) proc.Command {
	switch {
	case len(c) == 0:
		return proc.Command{}
	case len(c) == 1 && len(strings.Fields(c[0])) > 1:
		return proc.Command{Argv: []string{"sh", "-c", c[0]}}
	case len(c) == 1:
		return proc.Command{Argv: []string{strings.TrimSpace(c[0])}}
	}
	return proc.Command{Argv: c}
}

// lookupOwner resolves user and group names (or numbers); an empty one
// keeps the current id.
func lookupOwner(userName, group string) (uid, gid int, err error) {
	uid, gid = os.Getuid(), os.Getgid()
	if userName != "" {
		if n, err := strconv.Atoi(userName); err == nil {
			uid = n
		} else {
			u, err := user.Lookup(userName)
			if err != nil {
				return 0, 0, fmt.Errorf("user %q: %w", userName, err)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if n, err := strconv.Atoi(group); err == nil {
			gid = n
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return 0, 0, fmt.Errorf("group %q: %w", group, err)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, nil
}

// consulOptions turns the consul { } settings into client options: token,
// TLS, basic auth and transport as consul-template's client takes them
// (dependency/client_set.go CreateConsulClient). Basic auth replaces
// CONSUL_HTTP_AUTH only when it is on, as there (consul/api reads the
// variable first). The connection pool takes consul-template's defaults;
// the dialer takes dial_timeout and dial_keep_alive when they are above 0,
// and otherwise keeps autopilot's (3s, and keepalive probes that notice a
// dead peer within DeadConnTimeout), so every connection stays bounded.
func consulOptions(c ctconfig.Consul) (string, consul.ClientOptions, error) {
	addr := ""
	if c.Address != nil {
		addr = *c.Address
	}
	token := ""
	if c.Token != nil {
		token = *c.Token
	}
	if c.TokenFile != nil && *c.TokenFile != "" {
		b, err := os.ReadFile(*c.TokenFile)
		if err != nil {
			return "", consul.ClientOptions{}, fmt.Errorf("consul token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	tlsConf, err := sslConfig(c.SSL)
	if err != nil {
		return "", consul.ClientOptions{}, err
	}
	opts := consul.ClientOptions{Configure: func(cfg *api.Config) {
		if token != "" {
			cfg.Token = token
		}
		if c.Auth.On() {
			user, pass := c.Auth.Credentials()
			cfg.HttpAuth = &api.HttpBasicAuth{Username: user, Password: pass}
		}
		c.Transport.ApplyPool(cfg.Transport)
		if tlsConf != nil {
			cfg.Scheme = "https"
			// Set on the transport, consul/api keeps it and adds nothing
			// from the CONSUL_* TLS variables.
			cfg.Transport.TLSClientConfig = tlsConf.Clone()
		}
	}}
	if d := c.Transport.DialTimeout; d != nil && *d > 0 {
		opts.DialTimeout = *d
	}
	if d := c.Transport.DialKeepAlive; d != nil && *d > 0 {
		opts.KeepAlive = *d
	}
	return addr, opts, nil
}

// sslConfig is the TLS configuration the ssl options give, or nil when they
// leave TLS to the CONSUL_* variables. As consul-template, once the options
// turn TLS on they are the whole of it (a CONSUL_CACERT no longer counts),
// and a certificate without a key holds both in one PEM file.
func sslConfig(s ctconfig.SSL) (*tls.Config, error) {
	if !s.On() {
		return nil, nil
	}
	var tc api.TLSConfig
	set := func(dst *string, p *string) {
		if p != nil {
			*dst = *p
		}
	}
	set(&tc.CAFile, s.CACert)
	set(&tc.CAPath, s.CAPath)
	set(&tc.CertFile, s.Cert)
	set(&tc.Address, s.ServerName)
	if tc.CertFile != "" {
		tc.KeyFile = tc.CertFile
		if s.Key != nil && *s.Key != "" {
			tc.KeyFile = *s.Key
		}
	}
	tc.InsecureSkipVerify = s.Verify != nil && !*s.Verify
	conf, err := api.SetupTLSConfig(&tc)
	if err != nil {
		return nil, fmt.Errorf("consul ssl: %w", err)
	}
	return conf, nil
}

// ctRun is one consul-template run: templates, an optional child, signals.
type ctRun struct {
	flags          *ctconfig.Flags
	cfg            *ctconfig.Config
	log            zerolog.Logger
	stdout, stderr io.Writer
	child          *ctChild
}

func (r *ctRun) signals() (kill, reload syscall.Signal) {
	kill, reload = syscall.SIGINT, syscall.SIGHUP
	if r.cfg.KillSignal != nil {
		kill = *r.cfg.KillSignal
	}
	if r.cfg.ReloadSignal != nil {
		reload = *r.cfg.ReloadSignal
	}
	return kill, reload
}

// watchOptions are consul-template's query settings: stale reads unless
// max_stale is 0 (its default is 2s), an answer staler than max_stale
// dropped for a consistent read, block_query_wait as every blocking
// query's wait (its default is 1m; 0 sends Consul's default, 5m), and its
// retry policy, so a run whose Consul stays unreachable ends with exit 14
// as consul-template's does.
func watchOptions(cfg *ctconfig.Config) consul.WatchOptions {
	maxFailures, backoff, maxBackoff := cfg.Consul.Retry.Policy()
	maxStale := 2 * time.Second // consul-template's default
	if cfg.MaxStale != nil {
		maxStale = *cfg.MaxStale
	}
	return consul.WatchOptions{
		WaitTime:    cfg.BlockQueryWaitOrDefault(),
		Stale:       maxStale > 0,
		MaxStale:    maxStale,
		MaxFailures: maxFailures,
		BackoffMin:  backoff,
		BackoffMax:  maxBackoff,
	}
}

// build makes a runner for the current config.
func (r *ctRun) build(ctx context.Context) (*render.Runner, *consul.Watcher, error) {
	var rcs []render.Config
	childEnv := r.cfg.ChildEnv(os.Getenv)
	for _, t := range r.cfg.Templates {
		rc, err := renderConfig(r.cfg, t, r.stdout, r.stderr, childEnv)
		if err != nil {
			return nil, nil, err
		}
		// As consul-template: a failed command ends the run, and so does a
		// failed execution unless error_fatal is false.
		rc.ExitOnCommandError = true
		if r.cfg.ErrorFatal(t) {
			rc.ExecuteErrors = render.ErrorsExit
		}
		if r.cfg.ExecEnabled() {
			rc.Reload, rc.ReloadName = r.child.templateChanged, "exec child" // once per change, however many templates changed
		}
		rcs = append(rcs, rc)
	}
	addr, copts, err := consulOptions(r.cfg.Consul)
	if err != nil {
		return nil, nil, err
	}
	client, err := consul.NewClientWithOptions(addr, copts)
	if err != nil {
		return nil, nil, err
	}
	w := consul.NewWatcher(ctx, client, watchOptions(r.cfg), r.log)
	mode := render.ModeWrite
	if r.cfg.Dry {
		mode = render.ModeDryRun
	}
	runner, err := render.NewRunner(w, rcs, render.RunnerOptions{Mode: mode, Out: r.stdout, DryRunHeaders: true, Log: r.log})
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return runner, w, nil
}

func (r *ctRun) run(ctx context.Context) int {
	kill, reload := r.signals()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append(proc.ForwardableSignals(), kill, reload, syscall.SIGINT, syscall.SIGTERM)...)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.cfg.ExecEnabled() {
		r.child = newCTChild(r.cfg.Exec, r.cfg.ChildEnv(os.Getenv), r.log, r.stdout, r.stderr)
	}

	type outcome struct {
		code int
		err  error
	}
	done := make(chan outcome, 1)
	var stopRunner func()
	start := func() error {
		rctx, rcancel := context.WithCancel(ctx)
		runner, w, err := r.build(rctx)
		if err != nil {
			rcancel()
			return err
		}
		stopRunner = func() { rcancel(); w.Close() }
		report := func(o outcome) {
			select {
			case done <- o:
			case <-rctx.Done(): // stopped meanwhile: a reload or an exit
			}
		}
		go func() {
			select {
			case err := <-w.Failed(): // retries spent, with or without -once
				report(outcome{ctExitRunnerError, err})
			case <-rctx.Done():
			}
		}()
		go func() {
			if err := runner.Once(rctx); err != nil {
				if rctx.Err() != nil {
					return // stopped: a reload or an exit
				}
				report(outcome{ctExitRunnerError, err})
				return
			}
			if r.child != nil {
				if err := r.child.start(); err != nil {
					report(outcome{ctExitRunnerError, err})
					return
				}
				if r.cfg.Once {
					return // the run ends with the child
				}
			} else if r.cfg.Once {
				report(outcome{ctExitOK, nil})
				return
			}
			if err := runner.Run(rctx); err != nil && rctx.Err() == nil {
				report(outcome{ctExitRunnerError, err}) // a failed command, or a template error_fatal
			}
		}()
		return nil
	}
	if err := start(); err != nil {
		fmt.Fprintf(r.stderr, "consul-template: %v\n", err)
		return ctExitRunnerError
	}
	var childExit <-chan int
	if r.child != nil {
		childExit = r.child.exited
	}
	stop := func(code int) int {
		stopRunner()
		if r.child != nil {
			r.child.stop()
		}
		return code
	}
	for {
		select {
		case o := <-done:
			if o.err != nil {
				fmt.Fprintf(r.stderr, "consul-template: %v\n", o.err)
			}
			return stop(o.code)
		case code := <-childExit:
			r.log.Info().Int("code", code).Msg("child exited")
			return stop(code) // stops a child a concurrent restart may have started
		case <-ctx.Done():
			return stop(ctExitInterrupt)
		case s := <-sigs:
			sig, _ := s.(syscall.Signal)
			switch {
			case sig == reload && sig != kill:
				fmt.Fprintln(r.stderr, "Reloading configuration...")
				cfg, err := loadCTConfig(r.flags)
				if err != nil {
					fmt.Fprintf(r.stderr, "consul-template: %v\n", err)
					return stop(ctExitConfigError)
				}
				stopRunner()
				r.cfg = cfg
				if err := start(); err != nil {
					fmt.Fprintf(r.stderr, "consul-template: %v\n", err)
					return stop(ctExitRunnerError)
				}
			case sig == kill || (r.child == nil && (sig == syscall.SIGTERM || sig == syscall.SIGINT)):
				fmt.Fprintln(r.stderr, "Cleaning up...")
				return stop(ctExitInterrupt)
			case r.child != nil:
				r.child.signal(sig)
			}
		}
	}
}
