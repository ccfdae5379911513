package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Options configure a telemetry Server.
type Options struct {
	// Addr is the host:port to listen on: the telemetry port on the address
	// telemetry.interfaces resolved to.
	Addr string
	// Source gives the snapshots behind /status and the autopilot_* metrics.
	Source Source
	// Metrics are the user's metrics (nil: none declared).
	Metrics *UserMetrics
	Log     zerolog.Logger
}

// Registry returns a registry with the Go runtime and process collectors,
// the autopilot_* collector reading src and the user's metrics.
func Registry(src Source, user *UserMetrics) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(src),
	}
	if user != nil {
		cs = append(cs, user)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register collector: %w", err)
		}
	}
	return reg, nil
}

// Handler serves /metrics from reg, /status from src and /health. None of
// them logs per request: Prometheus and orchestrators poll them all day.
func Handler(reg *prometheus.Registry, src Source, lg zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector error (a bad user metric) drops that metric only:
		// losing the whole scrape would hide everything else too.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{lg},
		// A scrape is ~20 KiB; gzipping it saves nothing that matters on a
		// container network and its compressor state cost 3 MiB of RSS
		// (measured: 17.5 -> 22 MiB after a few gzip scrapes).
		DisableCompression: true,
	}))
	mux.Handle("GET /status", StatusHandler(src))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// StatusHandler serves src's snapshot as the /status JSON document.
func StatusHandler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s := Complete(src.Snapshot())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	})
}

// Complete fills what every snapshot carries: the schema version, the time
// and empty lists rather than nulls, so clients can range without checks.
func Complete(s Snapshot) Snapshot {
	s.Schema = SchemaVersion
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	if s.Jobs == nil {
		s.Jobs = []JobStatus{}
	}
	if s.Services == nil {
		s.Services = []ServiceStatus{}
	}
	if s.Watches == nil {
		s.Watches = []WatchStatus{}
	}
	if s.Templates == nil {
		s.Templates = []TemplateStatus{}
	}
	if s.Consul.Requests == nil {
		s.Consul.Requests = []RequestCount{}
	}
	if s.Control.Requests == nil {
		s.Control.Requests = []ControlRequestCount{}
	}
	return s
}

// promLogger sends promhttp's error log to zerolog, rate-free: it only
// speaks when a collector fails.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn().Msg(fmt.Sprint(v...)) }

// Server is the telemetry HTTP server.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log zerolog.Logger
}

// Listen binds opts.Addr and prepares the handlers; Serve serves them. A
// port already in use is an error here, before anything runs.
func Listen(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("telemetry: no status source")
	}
	reg, err := Registry(opts.Source, opts.Metrics)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry: listen on %s: %w", opts.Addr, err)
	}
	return &Server{
		ln:  ln,
		log: opts.Log,
		srv: &http.Server{
			Handler:           Handler(reg, opts.Source, opts.Log),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			// net/http's own messages (TLS probes, bad requests) are noise
			// from scanners, not operator information.
			ErrorLog: log.New(discard{}, "", 0),
		},
	}, nil
}

// Addr is the address the server listens on (with the real port when the
// configured one was 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// shutdownGrace bounds how long Serve waits for in-flight scrapes at exit.
const shutdownGrace = 2 * time.Second

// Serve serves until ctx ends, then shuts down within shutdownGrace.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info().Str("addr", s.ln.Addr().String()).Msg("telemetry: serving /metrics, /status and /health")
	select {
	case err := <-errc:
		return fmt.Errorf("telemetry: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
	}
	<-errc
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
