// Command customers is the Customers service of the autopilot demo: it
// serves /data (its customers plus the Sales service's records, fetched
// from the instances Consul lists) and /health, and re-reads the Sales
// instances from Consul on SIGHUP. Run it under autopilot with
// autopilot.json next to this file.
package main

import "github.com/autopilot/autopilot/examples/internal/demoapp"

func main() {
	demoapp.Main(demoapp.App{
		Name:        "customers",
		Peer:        "sales",
		DefaultPort: 4000,
		Records:     []string{"Acme Corp", "Globex", "Initech"},
	})
}
