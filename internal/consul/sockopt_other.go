//go:build !linux

package consul

import (
	"syscall"
	"time"
)

// userTimeoutControl is a no-op where TCP_USER_TIMEOUT does not exist;
// keepalive and the per-call deadlines still bound every request.
func userTimeoutControl(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
