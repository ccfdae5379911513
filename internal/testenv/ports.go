package testenv

import (
	"fmt"
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
// until t's cleanup. The port is not held open (the program under test must bind it), so an
// unrelated program could still take it in between: StartConsul retries on new ports when that
// happens; other callers see a bind error, which is rare enough not to retry.
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

// pickPort lets the kernel choose a free TCP port, and checks the same UDP port is free too
// (Consul's serf ports use both).
func pickPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	defer l.Close()
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, nil // port 0 is never reserved: the caller tries again
	}
	u.Close()
	return port, nil
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
