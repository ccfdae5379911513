package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
	"github.com/autopilot/autopilot/supervisor/config"
)

// helperEnv makes a re-executed test binary act as TestHelperProcess; the
// GORACE setting spares each -race helper a second of sleep at exit.
var helperEnv = []string{
	"GO_WANT_HELPER_PROCESS=1",
	"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
}

// helper is the argv that re-runs this test binary as TestHelperProcess.
func helper(mode ...string) []string {
	return append([]string{os.Args[0], "-test.run=^TestHelperProcess$", "--"}, mode...)
}

// record appends "WHAT UNIXNANO" to file: the helpers' way to report
// events with their time.
func record(file, what string) {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%s %d\n", what, time.Now().UnixNano())
	f.Close()
}

// events reads a record file: each event with its time.
func events(file string) []event {
	data, _ := os.ReadFile(file)
	var out []event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		ns, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		out = append(out, event{strings.Join(f[:len(f)-1], " "), ns})
	}
	return out
}

type event struct {
	what string
	at   int64
}

func find(evs []event, what string) (event, bool) {
	for _, e := range evs {
		if e.what == what {
			return e, true
		}
	}
	return event{}, false
}

func count(evs []event, what string) int {
	n := 0
	for _, e := range evs {
		if e.what == what {
			n++
		}
	}
	return n
}

// TestHelperProcess is not a test: it is the fake app, hook and supervisor
// the other tests run, selected by GO_WANT_HELPER_PROCESS=1.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		return
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	mode, args := args[1], args[2:]
	switch mode {
	case "supervise": // supervise CONFIG CONSUL -- ARGV...: the supervisor itself
		log := zerolog.New(DropEPIPE(os.Stderr)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
		argv := args[3:]
		load := func() (*config.Config, error) {
			c, err := config.Load(args[0], os.LookupEnv)
			if err != nil {
				return nil, err
			}
			return c.WithApp(argv)
		}
		cfg, err := load()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(ExitConfig)
		}
		verify, _ := time.ParseDuration(os.Getenv("AUTOPILOT_TEST_VERIFY"))
		sv, err := New(cfg, Options{Consul: args[1], Log: log, WatchOptions: watchOpts, Load: load, VerifyInterval: verify})
		if err != nil {
			log.Error().Err(err).Msg("cannot run the config")
			os.Exit(ExitError)
		}
		os.Exit(sv.Run(context.Background()))
	case "get": // get URL: exit 0 if URL answers 200
		resp, err := http.Get(args[0])
		if err != nil || resp.StatusCode != 200 {
			os.Exit(1)
		}
	case "lateapp": // lateapp FILE PORT DELAY: listen on PORT after DELAY, recording "listening"
		d, _ := time.ParseDuration(args[2])
		time.Sleep(d)
		ln, err := net.Listen("tcp", "127.0.0.1:"+args[1])
		if err != nil {
			panic(err)
		}
		record(args[0], "listening")
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	case "exit": // exit CODE
		os.Exit(atoi(args[0]))
	case "kill": // kill SIG: die of a signal
		syscall.Kill(os.Getpid(), syscall.Signal(atoi(args[0])))
		time.Sleep(time.Minute)
	case "sleep": // sleep forever, signals untrapped
		time.Sleep(time.Hour)
	case "hook": // hook FILE NAME [CONSUL SERVICEID]: record NAME, and whether SERVICEID is registered
		what := args[1]
		if os.Getenv("AUTOPILOT_APP_PID") != "" {
			what += " pid"
		}
		if len(args) > 3 {
			c, _ := api.NewClient(&api.Config{Address: args[2]})
			svcs, err := c.Agent().Services()
			_, ok := svcs[args[3]]
			what += fmt.Sprintf(" registered=%v err=%v", ok, err != nil)
		}
		record(args[0], what)
	case "env": // env FILE NAME VAR...: record NAME and each VAR=value from the environment
		what := args[1]
		for _, v := range args[2:] {
			what += " " + v + "=" + os.Getenv(v)
		}
		record(args[0], what)
	case "onchange": // onchange FILE SLEEP: record start and end of a slow handler
		record(args[0], "start")
		d, _ := time.ParseDuration(args[1])
		time.Sleep(d)
		record(args[0], "end")
	case "app": // app FILE [PORT]: trap and record every signal; exit 0 (or $AUTOPILOT_TEST_EXIT) on SIGTERM; write the pid to FILE.pid
		ch := make(chan os.Signal, 32)
		signal.Notify(ch, append(proc.HandledSignals(), proc.ForwardableSignals()...)...)
		if len(args) > 1 {
			ln := "127.0.0.1:" + args[1]
			http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				if _, err := os.Stat(args[0] + ".sick"); err == nil {
					http.Error(w, "sick", 500)
					return
				}
				fmt.Fprintln(w, "ok")
			})
			go func() { fmt.Fprintln(os.Stderr, http.ListenAndServe(ln, nil)) }()
		}
		if err := os.WriteFile(args[0]+".pid", []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			panic(err)
		}
		record(args[0], "start "+os.Getenv("AUTOPILOT_TEST_TAG"))
		for sig := range ch {
			record(args[0], sig.(syscall.Signal).String())
			if sig == syscall.SIGTERM {
				record(args[0], "exit")
				code, _ := strconv.Atoi(os.Getenv("AUTOPILOT_TEST_EXIT"))
				os.Exit(code)
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
		os.Exit(2)
	}
	os.Exit(0)
}

// watchOpts make the supervisor's watch react quickly in tests.
var watchOpts = consul.WatchOptions{BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, RecoveryGrace: 2 * time.Second}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// sup is a supervisor run as a separate process (the test binary in
// "supervise" mode): PID-1 style reaping, signals and exit codes need a
// process of their own, and parallel tests must not share one Reaper.
type sup struct {
	t      *testing.T
	cmd    *exec.Cmd
	log    *testenv.Buffer
	done   chan struct{}
	code   int
	config string
}

// writeConfig writes a config file into dir and returns its path.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "autopilot.json")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSup runs the supervisor with config file cfg, Consul at addr and argv
// as the app. Cleanup kills it if the test did not wait for it.
func startSup(t *testing.T, cfg, addr string, env []string, argv ...string) *sup {
	t.Helper()
	s := &sup{t: t, log: &testenv.Buffer{}, done: make(chan struct{}), config: cfg}
	a := helper(append([]string{"supervise", cfg, addr, "--"}, argv...)...)
	s.cmd = exec.Command(a[0], a[1:]...)
	s.cmd.Env = append(append(os.Environ(), helperEnv...), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.WaitDelay = 2 * time.Second // the app (own group) may hold our pipe
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		s.code = testenv.ExitCode(s.cmd)
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			// A graceful stop also stops the app, which has a process group
			// of its own; SIGKILL only if that hangs.
			syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(15 * time.Second):
				syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.done
			}
		}
		if t.Failed() {
			t.Logf("supervisor log:\n%s", s.log.String())
		}
	})
	return s
}

func (s *sup) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// wait waits for the supervisor to exit and returns its exit code.
func (s *sup) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(timeout):
		s.t.Fatalf("supervisor still running after %s", timeout)
		return -1
	}
}

// logHas waits until the supervisor's log contains substr.
func (s *sup) logHas(substr string, timeout time.Duration) {
	s.t.Helper()
	testenv.Eventually(s.t, timeout, func() (bool, string) {
		return strings.Contains(s.log.String(), substr), "log without " + strconv.Quote(substr)
	})
}

// waitEvent waits until the record file has an event what.
func waitEvent(t *testing.T, file, what string, timeout time.Duration) event {
	t.Helper()
	var e event
	testenv.Eventually(t, timeout, func() (bool, string) {
		evs := events(file)
		var ok bool
		e, ok = find(evs, what)
		return ok, fmt.Sprintf("events %v", evs)
	})
	return e
}

// checkStatus returns the status of the TTL check of service id ("" if none).
func checkStatus(c *api.Client, id string) string {
	checks, err := c.Agent().Checks()
	if err != nil {
		return "error: " + err.Error()
	}
	if ch, ok := checks["service:"+id]; ok {
		return ch.Status
	}
	return ""
}
