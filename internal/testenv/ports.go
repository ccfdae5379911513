package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// reserved holds the ports handed out by FreePort and not yet released, so that two helpers in
// one test binary never get the same port, and so that a stopped agent's port stays its own until
// Restart binds it again.
var reserved = struct {
	sync.Mutex
	ports map[int]bool
	lock  *os.File // byte-range locks shared with the other test binaries on this machine
	tried bool
}{ports: map[int]bool{}}

// FreePort returns a port on 127.0.0.1 that nothing listens on (TCP or UDP) and that no other
// FreePort caller has, in this process or in another test binary of a parallel `go test ./...`,
// until t's cleanup. The port is not held open (the program under test must bind it), so a
// program that binds that very port could still take it in between: StartConsul and
// StartCluster retry on new ports when that happens; other callers see a bind error.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port, err := pickPort()
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		if !reserve(port) {
			continue
		}
		t.Cleanup(func() { release(port) })
		return port
	}
	t.Fatalf("free port: no free port on 127.0.0.1 after 100 tries")
	return 0
}

// pickPort returns a port on which a TCP listener and a UDP socket (Consul's serf ports use
// both) can both bind, or 0 when the one it tried could not.
//
// It picks below the kernel's ephemeral range (ip_local_port_range), not with Listen(":0"):
// every outgoing connection on the machine, and every `:0` listener, takes its local port from
// that range, so a port picked there is free when picked and can be an HTTP client's source
// port a moment later, and the agent that was to bind it dies of "address already in use" (a
// 3-server cluster binds twelve such ports, and CI once lost one of them). Below the range only
// a program that asks for that exact port can take it. When the range leaves no room below it,
// the kernel picks as before.
func pickPort() (int, error) {
	lo, hi := portRange()
	port := 0
	if lo < hi {
		port = lo + rand.IntN(hi-lo)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		if port != 0 {
			return 0, nil // taken: the caller tries another
		}
		return 0, err
	}
	port = l.Addr().(*net.TCPAddr).Port
	defer l.Close()
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, nil // port 0 is never reserved: the caller tries again
	}
	u.Close()
	return port, nil
}

// minPort is the lowest port pickPort uses: above the well-known and most registered daemon
// ports.
const minPort = 20000

// portRange is [lo, hi) of the ports pickPort chooses from: minPort up to the start of the
// ephemeral range, or an empty range when fewer than 1,000 ports lie there.
func portRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil || first-minPort < 1000 {
		return 0, 0
	}
	return minPort, first
}

// reserve marks port as taken. Across processes it takes a write lock on byte `port` of a file
// in the temp dir: fcntl locks vanish when their process exits, so a crashed test binary leaves
// nothing to clean up.
func reserve(port int) bool {
	if port == 0 {
		return false
	}
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.ports[port] {
		return false
	}
	if f := portLockFile(); f != nil {
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(port), Len: 1}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
			return false // another test binary has it
		}
	}
	reserved.ports[port] = true
	return true
}

func release(port int) {
	reserved.Lock()
	defer reserved.Unlock()
	delete(reserved.ports, port)
	if f := portLockFile(); f != nil {
		lk := syscall.Flock_t{Type: syscall.F_UNLCK, Whence: 0, Start: int64(port), Len: 1}
		_ = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	}
}

// portLockFile opens the shared lock file once. It stays open for the life of the process:
// closing any descriptor of a file drops all of the process's fcntl locks on it. Without it
// (e.g. a read-only temp dir) ports are still unique within the process.
func portLockFile() *os.File {
	if !reserved.tried {
		reserved.tried = true
		path := filepath.Join(os.TempDir(), "autopilot-testenv-ports.lock")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		if err == nil {
			reserved.lock = f
		}
	}
	return reserved.lock
}
