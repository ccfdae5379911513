// Package e2e holds autopilot's end-to-end tests: the real autopilot binary
// supervising the example services and a real nginx or HAProxy, against a
// real Consul agent, all on loopback. It has no non-test code.
//
//	CONSUL_BIN=$(scripts/consul-bin.sh) go test -race ./e2e/
//
// AUTOPILOT_BIN runs a prebuilt autopilot instead of building ./cmd/autopilot.
package e2e
