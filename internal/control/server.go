// Package control is autopilot's control socket: ContainerPilot 3's HTTP API
// over a Unix socket, so that scripts written for ContainerPilot
// (`containerpilot -putmetric`, `-putenv`, `-reload`, `-maintenance enable`)
// steer autopilot unchanged. Server is the supervisor's side; Client is what
// those flags use.
//
// Endpoints (as ContainerPilot 3; bodies are JSON objects):
//
//	POST /v3/reload                 reload the config
//	POST /v3/maintenance/enable     take every service out of Consul's passing set
//	POST /v3/maintenance/disable    put them back
//	POST /v3/environ  {"K": "V"}    set variables that later job runs see
//	POST /v3/metric   {"name": 1.5} record values of declared metrics
//	GET  /v3/ping                   is anyone listening
//	GET  /v3/status                 autopilot's status document (autopilot only)
//
// Success is 200 with an empty line, as in ContainerPilot. Where
// ContainerPilot answered a bare 422 (or ignored the request: an unknown
// metric), autopilot answers 422 with a one-line reason in the body, and
// 500 with the reason when a reload or maintenance change failed.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/telemetry"
)

// Controller is what the control socket steers: the running supervisor and
// its metrics. Every method must be safe for concurrent use.
type Controller interface {
	// Reload reads the config again and applies it; an error (a bad new
	// config) leaves the running generation alone.
	Reload(ctx context.Context) error
	// SetMaintenance puts every registered service in or out of Consul
	// maintenance mode.
	SetMaintenance(ctx context.Context, on bool) error
	// PutEnv sets a variable for every job started from now on.
	PutEnv(key, value string)
	// PutMetric records a value for a declared user metric.
	PutMetric(name string, value float64) error
	// Status is the status document served at /v3/status.
	Status() telemetry.Snapshot
}

// ErrInUse means another process serves the socket path.
var ErrInUse = errors.New("another autopilot is serving this control socket")

// maxBody bounds request bodies: putenv and putmetric carry a few pairs.
const maxBody = 1 << 20

// Server serves the control API on a Unix socket.
type Server struct {
	path string
	ln   *net.UnixListener
	ino  uint64 // the socket file's inode, so Close removes only our own
	log  zerolog.Logger

	tmpDir  string // Listen's private directory, empty once the socket is in place
	tmpOnce sync.Once

	mu     sync.Mutex
	counts map[RequestCount]uint64 // keyed with Count 0
}

// RequestCount is how many requests to one endpoint got one status code,
// as ContainerPilot 3 counted them (containerpilot_control_http_requests).
type RequestCount struct {
	Path  string // an endpoint's path, or "other"
	Code  int
	Count uint64
}

// Requests returns the request counters, sorted by path and code.
func (s *Server) Requests() []RequestCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RequestCount, 0, len(s.counts))
	for k, n := range s.counts {
		k.Count = n
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Code < out[j].Code
	})
	return out
}

// paths are the endpoints' paths: the only values of RequestCount.Path
// besides "other", so a scanner cannot grow the counters without bound.
var paths = map[string]bool{"/v3/reload": true, "/v3/maintenance/enable": true, "/v3/maintenance/disable": true,
	"/v3/environ": true, "/v3/metric": true, "/v3/ping": true, "/v3/status": true}

// count wraps h to count each request by path and status code.
func (s *Server) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		p := r.URL.Path
		if !paths[p] {
			p = "other"
		}
		s.mu.Lock()
		if s.counts == nil {
			s.counts = map[RequestCount]uint64{}
		}
		s.counts[RequestCount{Path: p, Code: cw.code}]++
		s.mu.Unlock()
	})
}

// codeWriter remembers the status code a handler wrote.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

// Listen creates the control socket at path, mode 0600 from the first
// instant: it is bound in a private directory, restricted, then renamed into
// place. A path whose directory is missing, a path held by a file that is not
// a socket, and a socket another process still answers on are errors; a
// socket left behind by a dead process is replaced.
func Listen(path string, lg zerolog.Logger) (*Server, error) {
	if path == "" {
		return nil, errors.New("control socket: empty path")
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control socket %s: directory %s does not exist (create it, or set control.socket to a path in an existing directory)", path, dir)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("control socket %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: the path exists and is not a socket; not replacing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: %w (set a different control.socket to run two in one container)", path, ErrInUse)
		}
		// Nobody answers: a socket left by a process that died. Replace it.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".autopilot-control-")
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	tmpSock := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // it is renamed; Close removes the final path itself
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpSock, path); err != nil {
		return fail(err)
	}
	// The empty private directory is removed by Serve or Close: an rmdir
	// costs 0.1-0.2 ms, here on the way to the app's fork (issue 13).
	s := &Server{path: path, ln: ln, log: lg, tmpDir: tmp}
	if fi, err := os.Lstat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			s.ino = st.Ino
		}
	}
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests with c until ctx ends, then removes the socket.
// A reload or maintenance request in flight at that moment is cancelled.
func (s *Server) Serve(ctx context.Context, c Controller) error {
	srv := &http.Server{
		Handler:           s.count(Handler(c, s.log)),
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	srv.SetKeepAlivesEnabled(false)
	s.removeTmpDir()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info().Str("socket", s.path).Msg("control: serving")
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("control socket %s: %w", s.path, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		cancel()
		<-errc
	}
	s.remove()
	return err
}

// Close stops listening and removes the socket without serving (for a
// startup that fails after Listen).
func (s *Server) Close() error {
	err := s.ln.Close()
	s.removeTmpDir()
	s.remove()
	return err
}

// removeTmpDir removes the directory Listen bound the socket in.
func (s *Server) removeTmpDir() {
	s.tmpOnce.Do(func() { os.Remove(s.tmpDir) })
}

// remove deletes the socket file if it is still ours: a successor that
// already replaced it keeps its own.
func (s *Server) remove() {
	fi, err := os.Lstat(s.path)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && s.ino != 0 && st.Ino != s.ino {
		return
	}
	_ = os.Remove(s.path)
}

// Handler is the control API over c.
func Handler(c Controller, lg zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/reload", func(w http.ResponseWriter, r *http.Request) {
		lg.Info().Msg("control: reload requested")
		if err := c.Reload(r.Context()); err != nil {
			fail(w, http.StatusInternalServerError, "reload: %v", err)
			return
		}
		ok(w)
	})
	maint := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			lg.Info().Bool("maintenance", on).Msg("control: maintenance requested")
			if err := c.SetMaintenance(r.Context(), on); err != nil {
				fail(w, http.StatusInternalServerError, "maintenance: %v", err)
				return
			}
			ok(w)
		}
	}
	mux.HandleFunc("POST /v3/maintenance/enable", maint(true))
	mux.HandleFunc("POST /v3/maintenance/disable", maint(false))
	mux.HandleFunc("POST /v3/environ", func(w http.ResponseWriter, r *http.Request) {
		var env map[string]string
		if err := decode(w, r, &env); err != nil {
			fail(w, http.StatusUnprocessableEntity, "environ: %v (want a JSON object of strings)", err)
			return
		}
		keys := sortedKeys(env)
		for _, k := range keys {
			if err := ValidEnv(k, env[k]); err != nil {
				fail(w, http.StatusUnprocessableEntity, "environ: %v", err)
				return
			}
		}
		for _, k := range keys {
			c.PutEnv(k, env[k])
		}
		lg.Info().Strs("keys", keys).Msg("control: environment updated")
		ok(w)
	})
	mux.HandleFunc("POST /v3/metric", func(w http.ResponseWriter, r *http.Request) {
		var raw map[string]json.RawMessage
		if err := decode(w, r, &raw); err != nil {
			fail(w, http.StatusUnprocessableEntity, "metric: %v (want a JSON object of numbers)", err)
			return
		}
		names := sortedKeys(raw)
		vals := make(map[string]float64, len(raw))
		for _, n := range names {
			v, err := metricValue(raw[n])
			if err != nil {
				fail(w, http.StatusUnprocessableEntity, "metric %q: %v", n, err)
				return
			}
			vals[n] = v
		}
		var errs []string
		for _, n := range names {
			if err := c.PutMetric(n, vals[n]); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			fail(w, http.StatusUnprocessableEntity, "metric: %s", strings.Join(errs, "; "))
			return
		}
		ok(w)
	})
	mux.HandleFunc("GET /v3/ping", func(w http.ResponseWriter, _ *http.Request) { ok(w) })
	mux.Handle("GET /v3/status", telemetry.StatusHandler(telemetry.SourceFunc(c.Status)))
	return mux
}

// ValidEnv checks a putenv pair: a name that a process environment can
// hold, and no NUL byte.
func ValidEnv(key, value string) error {
	switch {
	case key == "":
		return errors.New("empty variable name")
	case strings.ContainsAny(key, "=\x00"):
		return fmt.Errorf("variable name %q: must not contain '=' or NUL", key)
	case strings.ContainsRune(value, 0):
		return fmt.Errorf("variable %s: value must not contain NUL", key)
	}
	return nil
}

// ParseValue parses a metric value as putmetric gives it: a finite number.
func ParseValue(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("value %q: want a finite number", s)
	}
	return v, nil
}

// metricValue accepts a JSON number or a string holding one: ContainerPilot's
// client sends strings.
func metricValue(raw json.RawMessage) (float64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return ParseValue(s)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, fmt.Errorf("value %s is not a number", raw)
	}
	return ParseValue(strconv.FormatFloat(f, 'g', -1, 64))
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bad JSON: %w", err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ok(w http.ResponseWriter) {
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "\n")
}

func fail(w http.ResponseWriter, code int, format string, a ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, format+"\n", a...)
}
