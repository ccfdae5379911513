package config

import (
	"net/netip"
	"testing"
)

func TestResolveAddress(t *testing.T) {
	a := netip.MustParseAddr
	host := []HostAddr{
		{"lo", a("127.0.0.1")}, {"lo", a("::1")},
		{"eth1", a("10.0.0.200")}, {"eth1", a("10.0.0.100")},
		{"eth0", a("fe80::1")}, {"eth0", a("192.168.1.100")}, {"eth0", a("10.2.0.1")},
		{"eth2", a("fdc6:238c:c4bc::1")}, {"eth2", a("10.1.0.200")},
	}
	spec := func(ss ...string) []Interface {
		var out []Interface
		for _, s := range ss {
			i, err := ParseInterface(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		specs []string
		host  []HostAddr
		want  string
	}{
		{nil, host, "10.2.0.1"},                 // eth0's first IPv4, by address order
		{[]string{"eth1"}, host, "10.0.0.100"},  // sorted by bytes, as ContainerPilot
		{[]string{"eth0[0]"}, host, "10.2.0.1"}, // index over every family, sorted
		{[]string{"eth0[2]"}, host, "fe80::1"},  // an index may pick link-local
		{[]string{"eth0:inet6"}, host, ""},      // link-local never matches a family
		{[]string{"eth0:inet6", "inet6"}, host, "fdc6:238c:c4bc::1"},
		{[]string{"inet"}, host, "10.2.0.1"}, // eth0 < eth1 < eth2 < lo
		{[]string{"lo"}, host, "127.0.0.1"},  // a named loopback is allowed
		{[]string{"lo:inet6"}, host, "::1"},
		{[]string{"10.0.0.0/24"}, host, "10.0.0.100"},
		{[]string{"fdc6:238c:c4bc::/48"}, host, "fdc6:238c:c4bc::1"},
		{[]string{"eth9", "static:192.0.2.7"}, host, "192.0.2.7"},
		{[]string{"eth9"}, host, ""},
		{nil, []HostAddr{{"lo", a("127.0.0.1")}}, "127.0.0.1"}, // no network: loopback
		{[]string{"inet"}, []HostAddr{{"lo", a("127.0.0.1")}}, ""},
	} {
		got, err := ResolveAddress(spec(tc.specs...), tc.host)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%v: got %s, want an error", tc.specs, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%v: got %s, %v; want %s", tc.specs, got, err, tc.want)
		}
	}
	if addrs, err := HostAddrs(); err != nil || len(addrs) == 0 {
		t.Errorf("HostAddrs: %v, %v", addrs, err)
	}
}
