// Package demoapp is the body of the example services customers and sales:
// a small HTTP app that serves its own records, fetches its peer's records
// from the addresses it learned from Consul, and asks Consul again on
// SIGHUP (which autopilot's backend onChange sends), as in the classic
// autopilot-pattern article. It uses the standard library only, so it reads
// like an app that knows nothing about autopilot except the signal.
package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sigs takes the signals from the very start of the process: autopilot runs
// the backend's onChange (SIGHUP) as soon as it sees the peer, which can be
// a few milliseconds after the app started, and without a handler SIGHUP
// would end the app.
var sigs = make(chan os.Signal, 4)

func init() {
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
}

// App describes one example service.
type App struct {
	Name        string   // service name, e.g. "customers"
	Peer        string   // the service whose data it also shows, e.g. "sales"
	DefaultPort int      // used when neither -port nor $PORT is set
	Records     []string // its own data
}

// Main runs the app until SIGTERM or SIGINT and exits the process.
func Main(a App) {
	fs := flag.NewFlagSet(a.Name, flag.ExitOnError)
	port := fs.Int("port", envInt("PORT", a.DefaultPort), "listen port (default $PORT)")
	bind := fs.String("bind", envOr("BIND", "127.0.0.1"), "listen address (default $BIND)")
	consul := fs.String("consul", envOr("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), "Consul HTTP address (default $CONSUL_HTTP_ADDR)")
	_ = fs.Parse(os.Args[1:])

	logger := log.New(os.Stderr, fmt.Sprintf("%s:%d ", a.Name, *port), log.LstdFlags|log.Lmsgprefix)
	s := &server{app: a, instance: fmt.Sprintf("%s@%s", a.Name, net.JoinHostPort(advertised(a.Name, *bind), strconv.Itoa(*port))),
		consul: *consul, log: logger, client: &http.Client{Timeout: 2 * time.Second}}
	if err := s.run(net.JoinHostPort(*bind, strconv.Itoa(*port))); err != nil {
		logger.Print(err)
		os.Exit(1)
	}
}

type server struct {
	app      App
	instance string // what answered, in the X-Instance header and the JSON
	consul   string
	log      *log.Logger
	client   *http.Client

	mu    sync.Mutex
	peers []string // host:port of the peer's healthy instances, as last learned
	known bool     // peers was asked for at least once
}

func (s *server) run(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", s.instance)
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /data", s.data)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	stopped := make(chan struct{}) // closed once Shutdown finished the requests in flight
	go func() {
		defer close(stopped)
		for sig := range sigs {
			if sig == syscall.SIGHUP {
				// The backend's onChange: the peer's instances changed.
				s.refresh()
				continue
			}
			s.log.Printf("%v: shutting down", sig)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx) // finish the requests in flight
			cancel()
			return
		}
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.log.Printf("listening on %s (Consul %s)", addr, s.consul)
	// Ask Consul only now that /health answers: the onChange handler skips
	// the SIGHUP while /health fails, so a change it saw before then is one
	// this lookup sees.
	s.refresh()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

// refresh asks Consul for the peer's healthy instances.
func (s *server) refresh() {
	peers, err := s.lookup()
	if err != nil {
		s.log.Printf("%s instances: %v (keeping %d known)", s.app.Peer, err, len(s.peerList()))
		return
	}
	s.mu.Lock()
	s.peers, s.known = peers, true
	s.mu.Unlock()
	s.log.Printf("%s instances: %v", s.app.Peer, peers)
}

func (s *server) peerList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers
}

// lookup is GET /v1/health/service/PEER?passing on the Consul agent.
func (s *server) lookup() ([]string, error) {
	u := url.URL{Scheme: "http", Host: s.consul, Path: "/v1/health/service/" + s.app.Peer, RawQuery: "passing=1"}
	resp, err := s.client.Get(u.String())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("consul: %s", resp.Status)
	}
	var entries []struct {
		Node    struct{ Address string }
		Service struct {
			Address string
			Port    int
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(e.Service.Port)))
	}
	return out, nil
}

// ownData is what an instance serves about itself.
type ownData struct {
	Service  string   `json:"service"`
	Instance string   `json:"instance"`
	Records  []string `json:"records"`
}

// data serves its own records and, unless ?own=1 (what a peer asks for, so
// two services don't call each other forever), the peer's.
func (s *server) data(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Instance", s.instance)
	w.Header().Set("Content-Type", "application/json")
	own := ownData{Service: s.app.Name, Instance: s.instance, Records: s.app.Records}
	if r.URL.Query().Get("own") != "" {
		_ = json.NewEncoder(w).Encode(own)
		return
	}
	out := struct {
		ownData
		Peer      *ownData `json:"peer,omitempty"`
		PeerError string   `json:"peerError,omitempty"`
	}{ownData: own}
	peer, err := s.fetchPeer(r.Context())
	if err != nil {
		out.PeerError = err.Error()
	} else {
		out.Peer = peer
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// fetchPeer gets the peer's own records from one of its known instances,
// trying the others if one fails. Like the article's getUpstreams, it asks
// Consul only if it knows no instance yet; otherwise SIGHUP keeps the list
// current.
func (s *server) fetchPeer(ctx context.Context) (*ownData, error) {
	s.mu.Lock()
	known := s.known && len(s.peers) > 0
	s.mu.Unlock()
	if !known {
		s.refresh()
	}
	peers := s.peerList()
	if len(peers) == 0 {
		return nil, fmt.Errorf("no healthy %s instance known", s.app.Peer)
	}
	start := rand.IntN(len(peers))
	var lastErr error
	for i := range peers {
		addr := peers[(start+i)%len(peers)]
		d, err := s.get(ctx, "http://"+addr+"/data?own=1")
		if err == nil {
			return d, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func (s *server) get(ctx context.Context, u string) (*ownData, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	var d ownData
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return &d, nil
}

// advertised is the address an instance is known by: the listen address,
// unless that is every address (0.0.0.0 in a container), then the one its
// supervisor registered in Consul ($AUTOPILOT_<NAME>_IP, or ContainerPilot's
// $CONTAINERPILOT_<NAME>_IP), so X-Instance tells replicas apart.
func advertised(name, bind string) string {
	if ip := net.ParseIP(bind); bind != "" && (ip == nil || !ip.IsUnspecified()) {
		return bind
	}
	key := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
	for _, prefix := range []string{"AUTOPILOT_", "CONTAINERPILOT_"} {
		if v := os.Getenv(prefix + key + "_IP"); v != "" {
			return v
		}
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return bind
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return n
	}
	return def
}
