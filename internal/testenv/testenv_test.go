package testenv

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFreePortIsUniqueAndBindable(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		port := FreePort(t)
		if seen[port] {
			t.Fatalf("FreePort returned %d twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d from FreePort: %v", port, err)
		}
		l.Close()
	}
}

// FreePort picks below the ephemeral range, where no outgoing connection's source port and no
// `:0` listener can take the port before the program under test binds it.
func TestFreePortBelowEphemeralRange(t *testing.T) {
	lo, hi := portRange()
	if lo >= hi {
		t.Skipf("no room below this machine's ephemeral range; FreePort lets the kernel pick")
	}
	for range 50 {
		if port := FreePort(t); port < lo || port >= hi {
			t.Fatalf("FreePort = %d, want in [%d, %d)", port, lo, hi)
		}
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 5*time.Second, func() (bool, string) {
		n++
		return n == 3, fmt.Sprintf("n = %d", n)
	})
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestWaitFor(t *testing.T) {
	stop := errors.New("gone")
	tests := []struct {
		name     string
		cond     func() (bool, string, error)
		wantErr  error
		wantSeen string
	}{
		{"ok", func() (bool, string, error) { return true, "fine", nil }, nil, "fine"},
		{"error stops polling", func() (bool, string, error) { return false, "dead", stop }, stop, "dead"},
		{"timeout keeps last seen", func() (bool, string, error) { return false, "not yet", nil }, errTimeout, "not yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen, err := waitFor(20*time.Millisecond, time.Millisecond, tt.cond)
			if !errors.Is(err, tt.wantErr) || seen != tt.wantSeen {
				t.Fatalf("waitFor = %q, %v; want %q, %v", seen, err, tt.wantSeen, tt.wantErr)
			}
		})
	}
}

func TestHTTPGetOnlyLoopback(t *testing.T) {
	_, _, err := HTTPGet(t, "http://example.invalid/")
	if err == nil || !strings.Contains(err.Error(), "neither a loopback address nor on the test bridge") {
		t.Fatalf("HTTPGet to a non-loopback host: err = %v, want a refusal", err)
	}
	// The test bridge's subnet is allowed; its neighbours are not.
	for host, ok := range map[string]bool{"10.213.7.9": true, "10.213.8.1": false, "10.0.0.1": false} {
		if InNetnsSubnet(host) != ok {
			t.Errorf("InNetnsSubnet(%s) = %v", host, !ok)
		}
	}
}

func TestReadStat(t *testing.T) {
	// comm may contain spaces and parentheses; fields are counted from the last ')'.
	st, err := readStat(1)
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if st.state == "" {
		t.Fatalf("readStat(1) = %+v", st)
	}
}
