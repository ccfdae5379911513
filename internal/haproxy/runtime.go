package haproxy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DefaultDrain is how long a removed server may keep its sessions before
// they are shut down and the server is deleted.
const DefaultDrain = 30 * time.Second

// RuntimeOptions configure a Runtime.
type RuntimeOptions struct {
	// Socket is the worker's stats socket, at `level admin`
	// (`stats socket /run/haproxy/admin.sock mode 600 level admin`).
	Socket string
	// Drain bounds how long a removed server keeps its sessions; then they
	// are shut down and the server deleted. 0 means DefaultDrain. The file
	// swap never waits for it: the server is in maintenance (no new
	// requests) before Apply returns.
	Drain   time.Duration
	Timeout time.Duration // per command; 0 means DefaultTimeout
	Log     zerolog.Logger
}

// Runtime applies server changes to one running HAProxy through its stats
// socket. Apply is meant for render.Config.Apply; a Runtime is used by one
// template, and Apply is not called concurrently with itself. Close stops
// the background deletions of drained servers.
type Runtime struct {
	cli   Client
	drain time.Duration
	log   zerolog.Logger

	ctx    context.Context // ends at Close; bounds the drains
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending map[string]*draining // "backend/server" being drained, owned under mu
}

// draining is a removed server waiting for its sessions to end.
type draining struct {
	backend, name string
	old           *Server // as the file had it, when Plan could read it
}

// key is the server's "backend/server" name, as the runtime API takes it.
func (d *draining) key() string { return d.backend + "/" + d.name }

// NewRuntime returns a Runtime for the HAProxy whose stats socket is opts.Socket.
func NewRuntime(opts RuntimeOptions) *Runtime {
	if opts.Drain <= 0 {
		opts.Drain = DefaultDrain
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{
		cli: Client{Addr: opts.Socket, Timeout: opts.Timeout}, drain: opts.Drain,
		log: opts.Log.With().Str("haproxy_socket", opts.Socket).Logger(),
		ctx: ctx, cancel: cancel, pending: map[string]*draining{},
	}
}

// Close stops the pending deletions and waits for them to return. Servers
// still draining stay in maintenance until the next reload, which drops them.
func (r *Runtime) Close() {
	r.cancel()
	r.wg.Wait()
}

// Draining is the number of removed servers not deleted yet.
func (r *Runtime) Draining() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Apply makes the HAProxy that runs old run new without a reload, when the
// two differ only in backend servers. It reports applied=false with a nil
// error when the change needs a reload (anything outside server lines), and
// an error when it tried and failed (socket unreachable, a command refused,
// the running state not matching new afterwards). In both cases the caller
// reloads from the new file, which also undoes any partial change.
func (r *Runtime) Apply(ctx context.Context, old, new []byte) (applied bool, err error) {
	defer func() {
		if !applied {
			r.forgetDrains()
		}
	}()
	oc, err := ParseConfig(old)
	if err != nil {
		r.log.Info().Err(err).Msg("running config not understood; reloading")
		return false, nil
	}
	nc, err := ParseConfig(new)
	if err != nil {
		r.log.Info().Err(err).Msg("new config not understood; reloading")
		return false, nil
	}
	ops, err := Plan(oc, nc)
	if err != nil {
		r.log.Info().Str("reason", strings.TrimPrefix(err.Error(), ErrNeedsReload.Error()+": ")).Msg("change needs a reload")
		return false, nil
	}
	ops, err = r.revive(ops)
	if err != nil {
		return false, err
	}
	for _, op := range ops {
		var d *draining
		if op.Kind == OpRemove {
			// Counted before its maintenance command, so that Draining
			// never reads 0 while HAProxy already drains the server (the
			// file without it is in place before Apply runs).
			d = r.pend(op)
		}
		for _, cmd := range op.Commands() {
			if err := r.cli.Run(ctx, cmd); err != nil {
				return false, fmt.Errorf("runtime API: %s: %w", op, err)
			}
		}
		if d != nil {
			r.startDrain(d)
		}
	}
	if err := r.Verify(ctx, nc); err != nil {
		return false, err
	}
	if len(ops) > 0 {
		names := make([]string, 0, min(len(ops), 20))
		for _, op := range ops[:min(len(ops), 20)] {
			names = append(names, op.String())
		}
		r.log.Info().Int("servers", len(ops)).Strs("ops", names).Msg("applied through the runtime API, no reload")
	}
	return true, nil
}

// forgetDrains drops the pending deletions when the caller is about to
// reload: the new worker starts from the file, without the removed
// servers, so there is nothing left to delete or to revive.
func (r *Runtime) forgetDrains() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.pending)
}

// revive turns the re-addition of a server that is still draining into a
// change of that server, since HAProxy still has it: it cancels the drain.
// A draining server that comes back with other options cannot be changed in
// place, so that needs a reload.
func (r *Runtime) revive(ops []Op) ([]Op, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, op := range ops {
		key := op.Backend + "/" + op.Name
		d, ok := r.pending[key]
		if !ok || op.Kind != OpAdd {
			continue
		}
		if d.old == nil || d.old.Options != op.New.Options {
			return nil, fmt.Errorf("runtime API: %s is back while still draining, with other options", key)
		}
		delete(r.pending, key)
		was := *d.old
		was.Disabled = true // it is in maintenance now
		ops[i] = Op{Kind: OpSet, Backend: op.Backend, Name: op.Name, New: op.New, Old: &was}
	}
	return ops, nil
}

// pend records op's server as draining. If Apply then fails, forgetDrains
// drops it again with the rest.
func (r *Runtime) pend(op Op) *draining {
	d := &draining{backend: op.Backend, name: op.Name, old: op.Old}
	r.mu.Lock()
	r.pending[d.key()] = d
	r.mu.Unlock()
	return d
}

// startDrain deletes a server put in maintenance once its sessions are
// gone, or shuts them down after the drain bound and deletes it then.
func (r *Runtime) startDrain(d *draining) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.drainLoop(d.key(), d)
	}()
}

func (r *Runtime) drainLoop(key string, d *draining) {
	log := r.log.With().Str("server", key).Logger()
	done := func() {
		r.mu.Lock()
		if r.pending[key] == d {
			delete(r.pending, key)
		}
		r.mu.Unlock()
	}
	bound := time.Now().Add(r.drain)
	giveUp := bound.Add(time.Minute)
	wait := 100 * time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	shut := false
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C:
		}
		r.mu.Lock()
		current := r.pending[key] == d
		r.mu.Unlock()
		if !current { // revived by a later Apply
			return
		}
		now := time.Now()
		if !shut && now.After(bound) {
			shut = true
			err := r.cli.Run(r.ctx, "shutdown sessions server "+key)
			log.Info().Err(err).Dur("drain", r.drain).Msg("removed server still had sessions after the drain bound; shutting them down")
		}
		out, err := r.cli.Exec(r.ctx, "del server "+key)
		answer := strings.TrimSpace(out)
		switch {
		case err != nil:
			log.Debug().Err(err).Msg("del server: will retry")
		case answer == "Server deleted.":
			log.Debug().Msg("removed server drained and deleted")
			done()
			return
		case answer == "No such server.", strings.HasPrefix(answer, "Only servers in maintenance"):
			// A reload dropped it, or it is serving again: nothing to delete.
			log.Debug().Str("answer", answer).Msg("del server: nothing to delete")
			done()
			return
		default:
			log.Debug().Str("answer", answer).Msg("del server: still in use, will retry")
		}
		if now.After(giveUp) {
			log.Warn().Str("answer", answer).Err(err).Msg("could not delete a removed server; it stays in maintenance until the next reload")
			done()
			return
		}
		wait = min(2*wait, 2*time.Second)
		timer.Reset(wait)
	}
}

// MismatchError lists where the running servers differ from a config.
type MismatchError struct{ Diffs []string }

func (e *MismatchError) Error() string {
	return "running servers differ from the file: " + strings.Join(e.Diffs, "; ")
}

// Verify compares what HAProxy runs (`show servers state`) with cfg: each
// server line must run with its address, port, weight and state; a
// running server that cfg does not have must be in maintenance (draining).
// Server lines the runtime path does not handle (host names, other
// keywords) are not compared.
func (r *Runtime) Verify(ctx context.Context, cfg *Config) error {
	out, err := r.cli.Exec(ctx, "show servers state")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	states, err := ParseServersState(out)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return Compare(states, cfg)
}

// Compare is Verify on a parsed `show servers state`.
func Compare(states []ServerState, cfg *Config) error {
	running := map[string]ServerState{}
	for _, s := range states {
		running[s.Backend+"/"+s.Name] = s
	}
	var diffs []string
	for _, b := range cfg.Backends {
		for _, l := range b.Servers {
			key := b.Name + "/" + l.Name
			got, ok := running[key]
			delete(running, key)
			if !ok {
				diffs = append(diffs, key+" is not running")
				continue
			}
			want, err := ParseServer(b.Defaults, l.Text)
			if err != nil || !b.DefaultsKnown {
				continue
			}
			if got.Addr != want.Addr || got.Port != want.Port {
				diffs = append(diffs, fmt.Sprintf("%s runs at %s:%d, want %s:%d", key, got.Addr, got.Port, want.Addr, want.Port))
			}
			if got.Weight != want.Weight {
				diffs = append(diffs, fmt.Sprintf("%s has weight %d, want %d", key, got.Weight, want.Weight))
			}
			if got.Maint() != want.Disabled {
				diffs = append(diffs, fmt.Sprintf("%s maintenance=%v, want %v", key, got.Maint(), want.Disabled))
			}
		}
	}
	for _, b := range cfg.Backends {
		for key, s := range running {
			if s.Backend == b.Name && !s.Maint() {
				diffs = append(diffs, key+" serves but is not in the file")
			}
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		return &MismatchError{Diffs: diffs}
	}
	return nil
}
