// Command sales is the Sales service of the autopilot demo: it serves /data
// (its sales plus the Customers service's records, fetched from the
// instances Consul lists) and /health, and re-reads the Customers instances
// from Consul on SIGHUP. Run it under autopilot with autopilot.json next to
// this file.
package main

import "github.com/autopilot/autopilot/examples/internal/demoapp"

func main() {
	demoapp.Main(demoapp.App{
		Name:        "sales",
		Peer:        "customers",
		DefaultPort: 3000,
		Records:     []string{"order 1001: 12 widgets", "order 1002: 3 gadgets", "order 1003: 40 sprockets"},
	})
}
