package haproxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ServerState is one row of `show servers state`: what a worker runs.
type ServerState struct {
	Backend string
	Name    string
	Addr    netip.Addr
	Port    uint16
	Weight  int // srv_uweight: the weight set by config or `set server weight`
	Admin   int // srv_admin_state flags
	Op      int // srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping
}

// srv_admin_state flags of HAProxy 2.6 (include/haproxy/server-t.h).
const (
	adminFMaint = 0x01 // forced (CLI, config `disabled`)
	adminIMaint = 0x02 // inherited from a tracked server
	adminRMaint = 0x20 // resolution failed
	adminHMaint = 0x40 // hostname resolution
)

// Maint reports whether the server takes no traffic because of an
// administrative state (as opposed to failing its health checks).
func (s ServerState) Maint() bool {
	return s.Admin&(adminFMaint|adminIMaint|adminRMaint|adminHMaint) != 0
}

// ParseServersState reads the answer of `show servers state` (format
// version 1, HAProxy 1.8 to 3.x), locating columns by the header's names.
func ParseServersState(s string) ([]ServerState, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "1" {
		return nil, fmt.Errorf("show servers state: want format version 1, got %q", firstLine(s))
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("show servers state: no header line: %q", firstLine(s))
	}
	col := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "# ")) {
		col[name] = i
	}
	need := []string{"be_name", "srv_name", "srv_addr", "srv_port", "srv_uweight", "srv_admin_state", "srv_op_state"}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return nil, fmt.Errorf("show servers state: no column %s in %q", n, lines[1])
		}
	}
	var out []ServerState
	for i, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) < len(col) {
			return nil, fmt.Errorf("show servers state: line %d has %d fields, want %d: %q", i+3, len(f), len(col), l)
		}
		st := ServerState{Backend: f[col["be_name"]], Name: f[col["srv_name"]]}
		var err error
		if st.Addr, err = netip.ParseAddr(f[col["srv_addr"]]); err != nil {
			// A server whose name did not resolve has no address: keep the zero Addr.
			st.Addr = netip.Addr{}
		}
		ints := []struct {
			name string
			dst  *int
		}{{"srv_uweight", &st.Weight}, {"srv_admin_state", &st.Admin}, {"srv_op_state", &st.Op}}
		for _, c := range ints {
			if *c.dst, err = strconv.Atoi(f[col[c.name]]); err != nil {
				return nil, fmt.Errorf("show servers state: line %d: %s %q is not a number", i+3, c.name, f[col[c.name]])
			}
		}
		p, err := strconv.ParseUint(f[col["srv_port"]], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("show servers state: line %d: srv_port %q is not a port", i+3, f[col["srv_port"]])
		}
		st.Port = uint16(p)
		out = append(out, st)
	}
	return out, nil
}

// Procs is the master CLI's `show proc`: the master's reload counters and
// the current and old workers.
type Procs struct {
	MasterPID int
	Reloads   int // reloads the master did, successful or not
	Failed    int // of which failed (HAProxy 2.6 prints "N [failed: F]")
	Workers   []int
	Old       []int // old workers still finishing their connections
}

// ParseProcs reads the answer of `show proc` on the master CLI.
func ParseProcs(s string) (Procs, error) {
	var p Procs
	section := ""
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
			continue
		case strings.HasPrefix(l, "#<PID>"):
			continue
		case strings.HasPrefix(l, "#"):
			section = strings.TrimSpace(strings.TrimPrefix(l, "#"))
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			return Procs{}, fmt.Errorf("show proc: short line %q", l)
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			return Procs{}, fmt.Errorf("show proc: pid %q in %q", f[0], l)
		}
		switch {
		case f[1] == "master":
			p.MasterPID = pid
			if p.Reloads, err = strconv.Atoi(f[2]); err != nil {
				return Procs{}, fmt.Errorf("show proc: reloads %q in %q", f[2], l)
			}
			if len(f) >= 5 && f[3] == "[failed:" {
				if p.Failed, err = strconv.Atoi(strings.TrimSuffix(f[4], "]")); err != nil {
					return Procs{}, fmt.Errorf("show proc: failed count %q in %q", f[4], l)
				}
			}
		case f[1] == "worker" && section == "workers":
			p.Workers = append(p.Workers, pid)
		case f[1] == "worker" && section == "old workers":
			p.Old = append(p.Old, pid)
		}
	}
	if p.MasterPID == 0 {
		return Procs{}, fmt.Errorf("show proc: no master line in %q", firstLine(s))
	}
	return p, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
