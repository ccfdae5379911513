package haproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// OpKind is what an Op does to one server.
type OpKind int

const (
	OpAdd    OpKind = iota // a new server line
	OpSet                  // same name, new address, weight or state
	OpRemove               // a server line gone: drain, then delete
)

func (k OpKind) String() string {
	switch k {
	case OpAdd:
		return "add"
	case OpSet:
		return "set"
	case OpRemove:
		return "remove"
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Op is one server change the runtime API can make.
type Op struct {
	Kind    OpKind
	Backend string
	Name    string
	New     *Server // OpAdd, OpSet: the server as the new file has it
	Old     *Server // OpSet, and OpRemove when readable: as the old file had it
}

func (o Op) String() string { return o.Kind.String() + " " + o.Backend + "/" + o.Name }

// ErrNeedsReload is wrapped by every Plan error that says a change cannot
// be made through the runtime API (as opposed to a config Plan cannot read).
var ErrNeedsReload = errors.New("needs a reload")

func needsReload(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNeedsReload, fmt.Sprintf(format, a...))
}

// Plan lists the runtime API changes that turn a HAProxy running old into
// one running new: adds and sets first, so that a backend never runs with
// fewer servers than both files give it, then removals. It fails with
// ErrNeedsReload when the configs differ anywhere but in backend servers,
// or in a way the runtime API cannot express (a new keyword on a server, a
// host name, a backend whose default-server Plan cannot resolve).
func Plan(old, new *Config) ([]Op, error) {
	if err := sameSkeleton(old.Skeleton, new.Skeleton); err != nil {
		return nil, err
	}
	var adds, removes []Op
	for _, nb := range new.Backends {
		if !validName(nb.Name) {
			return nil, needsReload("backend name %q (line %d) is not one the runtime API can address", nb.Name, nb.Line)
		}
		ob := old.Backend(nb.Name)
		if ob == nil { // the skeleton has the backend line, so this is a bug
			return nil, needsReload("backend %s is new", nb.Name)
		}
		oldByName := make(map[string]*ServerLine, len(ob.Servers))
		for _, s := range ob.Servers {
			oldByName[s.Name] = s
		}
		for _, ns := range nb.Servers {
			prev, had := oldByName[ns.Name]
			delete(oldByName, ns.Name)
			if had && prev.Text == ns.Text {
				continue
			}
			if !nb.DefaultsKnown {
				return nil, needsReload("backend %s (line %d) takes its defaults from a named section", nb.Name, nb.Line)
			}
			n, err := ParseServer(nb.Defaults, ns.Text)
			if err != nil {
				return nil, needsReload("line %d: %v", ns.Line, err)
			}
			if !had {
				adds = append(adds, Op{Kind: OpAdd, Backend: nb.Name, Name: ns.Name, New: n})
				continue
			}
			o, err := ParseServer(ob.Defaults, prev.Text)
			if err != nil {
				return nil, needsReload("line %d of the running config: %v", prev.Line, err)
			}
			if o.Options != n.Options {
				return nil, needsReload("line %d: server %s/%s changes options %q to %q", ns.Line, nb.Name, ns.Name, o.Options, n.Options)
			}
			adds = append(adds, Op{Kind: OpSet, Backend: nb.Name, Name: ns.Name, New: n, Old: o})
		}
		for _, prev := range ob.Servers { // in file order, for stable plans
			if _, gone := oldByName[prev.Name]; gone {
				if !validName(prev.Name) {
					return nil, needsReload("server name %q (line %d of the running config) is not one the runtime API can address", prev.Name, prev.Line)
				}
				// Old lets a server that comes back while draining be revived.
				o, _ := ParseServer(ob.Defaults, prev.Text)
				removes = append(removes, Op{Kind: OpRemove, Backend: nb.Name, Name: prev.Name, Old: o})
			}
		}
	}
	return append(adds, removes...), nil
}

// sameSkeleton reports the first difference between two skeletons as an
// ErrNeedsReload error, or nil when they are equal.
func sameSkeleton(old, new []string) error {
	for i := 0; i < len(old) || i < len(new); i++ {
		var o, n string
		if i < len(old) {
			o = old[i]
		}
		if i < len(new) {
			n = new[i]
		}
		if o != n {
			return needsReload("a change outside backend servers: %q became %q", o, n)
		}
	}
	return nil
}

// Commands are the runtime API commands that carry out op, in order. A
// removal only goes as far as maintenance (no new requests); deleting the
// server waits for its sessions and is the Runtime's job.
func (o Op) Commands() []string {
	id := o.Backend + "/" + o.Name
	var cmds []string
	switch o.Kind {
	case OpAdd:
		c := "add server " + id + " " + addrArg(o.New.Addr, o.New.Port)
		for _, a := range o.New.Args {
			c += " " + a
		}
		cmds = append(cmds, c)
		if o.New.Check {
			cmds = append(cmds, "enable health "+id)
		}
		if !o.New.Disabled {
			cmds = append(cmds, "set server "+id+" state ready")
		}
	case OpSet:
		if o.New.Addr != o.Old.Addr || o.New.Port != o.Old.Port {
			cmds = append(cmds, fmt.Sprintf("set server %s addr %s port %d", id, o.New.Addr, o.New.Port))
		}
		if o.New.Weight != o.Old.Weight {
			cmds = append(cmds, fmt.Sprintf("set server %s weight %d", id, o.New.Weight))
		}
		if o.New.Disabled != o.Old.Disabled {
			cmds = append(cmds, "set server "+id+" state "+stateArg(o.New.Disabled))
		}
	case OpRemove:
		cmds = append(cmds, "set server "+id+" state maint")
	}
	return cmds
}

func stateArg(disabled bool) string {
	if disabled {
		return "maint"
	}
	return "ready"
}

// addrArg writes an address as `add server` reads it.
func addrArg(a netip.Addr, port uint16) string {
	if a.Is6() && !a.Is4In6() {
		return "ipv6@" + a.String() + ":" + strconv.Itoa(int(port))
	}
	return a.String() + ":" + strconv.Itoa(int(port))
}
