package supervisor

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/autopilot/autopilot/supervisor/config"
)

// ifAddr is one address of one host interface.
type ifAddr struct {
	name string
	ip   netip.Addr
}

func hostAddrs() ([]ifAddr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var all []ifAddr
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					all = append(all, ifAddr{i.Name, ip.Unmap()})
				}
			}
		}
	}
	return all, nil
}

// resolveAddress returns the address to register for a job from its
// interface specs: the first spec that matches an address of this host.
// With no specs it takes the first non-loopback IPv4 address, else loopback.
func resolveAddress(specs []config.Interface) (string, error) {
	for _, sp := range specs {
		if sp.Kind == config.KindStatic {
			return sp.Addr.String(), nil
		}
	}
	all, err := hostAddrs()
	if err != nil {
		return "", err
	}
	usable := all[:0:0]
	for _, a := range all {
		if !a.ip.IsLinkLocalUnicast() {
			usable = append(usable, a)
		}
	}
	fam := func(f int, ip netip.Addr) bool {
		if f == 6 {
			return ip.Is6()
		}
		return ip.Is4()
	}
	if len(specs) == 0 {
		for _, a := range usable {
			if a.ip.Is4() && !a.ip.IsLoopback() {
				return a.ip.String(), nil
			}
		}
		return "127.0.0.1", nil
	}
	for _, sp := range specs {
		switch sp.Kind {
		case config.KindStatic:
			return sp.Addr.String(), nil
		case config.KindFamily:
			for _, a := range usable {
				if fam(sp.Family, a.ip) && !a.ip.IsLoopback() {
					return a.ip.String(), nil
				}
			}
		case config.KindCIDR:
			for _, a := range usable {
				if sp.Prefix.Contains(a.ip) {
					return a.ip.String(), nil
				}
			}
		case config.KindName:
			i := 0
			for _, a := range all {
				if a.name != sp.Name || !fam(sp.Family, a.ip) {
					continue
				}
				if sp.Index < 0 && !a.ip.IsLinkLocalUnicast() || sp.Index == i {
					return a.ip.String(), nil
				}
				i++
			}
		}
	}
	return "", fmt.Errorf("no address matches interfaces %v", specs)
}
