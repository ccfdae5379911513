package consul

import (
	"syscall"
	"time"
)

// userTimeoutControl sets TCP_USER_TIMEOUT on new TCP sockets: the kernel
// closes a connection whose sent data or keepalive probes stay
// unacknowledged that long, instead of retransmitting for ~15 minutes.
func userTimeoutControl(d time.Duration) func(network, address string, c syscall.RawConn) error {
	ms := int(d / time.Millisecond)
	return func(network, _ string, c syscall.RawConn) error {
		if network != "tcp" && network != "tcp4" && network != "tcp6" {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12 /* TCP_USER_TIMEOUT */, ms)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
