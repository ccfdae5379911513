package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// HostAddr is one address of one of the host's interfaces.
type HostAddr struct {
	Iface string
	Addr  netip.Addr
}

// HostAddrs lists the addresses of the host's up interfaces: the only I/O
// of address resolution, kept apart so that ResolveAddress is testable.
func HostAddrs() ([]HostAddr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []HostAddr
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					out = append(out, HostAddr{Iface: i.Name, Addr: ip.Unmap()})
				}
			}
		}
	}
	return out, nil
}

// defaultInterfaces is what a job without interfaces advertises:
// ContainerPilot's default (eth0's IPv4 address, else the first
// non-loopback IPv4 address), then loopback, so that a container without
// a network (or a laptop) still starts.
var defaultInterfaces = []Interface{
	{Kind: KindName, Name: "eth0", Family: 4, Index: -1},
	{Kind: KindFamily, Family: 4, Index: -1},
	{Kind: KindStatic, Addr: netip.AddrFrom4([4]byte{127, 0, 0, 1}), Index: -1},
}

// ResolveAddress returns the address to advertise for specs (nil: the
// default, see above) among the host's addresses: the first spec that
// matches one. As in ContainerPilot, addresses are ordered by interface
// name, then by address bytes, and eth0[N] counts the addresses of eth0 in
// that order. Link-local addresses never match a family (inet, inet6,
// eth0:inet6): they cannot be reached from another host.
func ResolveAddress(specs []Interface, host []HostAddr) (netip.Addr, error) {
	if len(specs) == 0 {
		specs = defaultInterfaces
	}
	host = slices.Clone(host)
	slices.SortStableFunc(host, func(a, b HostAddr) int {
		if c := strings.Compare(a.Iface, b.Iface); c != 0 {
			return c
		}
		x, y := a.Addr.As16(), b.Addr.As16()
		return bytes.Compare(x[:], y[:])
	})
	for _, s := range specs {
		if s.Kind == KindStatic {
			return s.Addr, nil
		}
		index, iface := -1, ""
		for _, h := range host {
			if h.Iface != iface {
				iface, index = h.Iface, 0
			} else {
				index++
			}
			if s.matches(h, index) {
				return h.Addr, nil
			}
		}
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.String()
	}
	have := make([]string, len(host))
	for i, h := range host {
		have[i] = h.Iface + ":" + h.Addr.String()
	}
	return netip.Addr{}, fmt.Errorf("no address matches interfaces [%s] (the host has %s)", strings.Join(names, ", "), strings.Join(have, " "))
}

func (s Interface) matches(h HostAddr, index int) bool {
	family := func(f int) bool {
		if h.Addr.IsLinkLocalUnicast() {
			return false
		}
		if f == 6 {
			return h.Addr.Is6()
		}
		return h.Addr.Is4()
	}
	switch s.Kind {
	case KindFamily:
		return !h.Addr.IsLoopback() && family(s.Family)
	case KindCIDR:
		return s.Prefix.Contains(h.Addr)
	case KindName:
		if h.Iface != s.Name {
			return false
		}
		if s.Index >= 0 {
			return index == s.Index
		}
		return family(s.Family)
	}
	return false
}
