package haproxy

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestDrainingCountedBeforeMaintenance pins the order of a removal: the
// file without the server is in place before Apply runs, so Draining must
// already count the server when HAProxy receives its maintenance command.
// (Against real HAProxy, TestRemovalDrains saw maintenance and 0 draining
// in that window.) A fake stats socket reads Draining while it answers the
// command; its empty `show servers state` then fails Apply's check, which
// drops the pending drain again.
func TestDrainingCountedBeforeMaintenance(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rt := NewRuntime(RuntimeOptions{Socket: sock})
	defer rt.Close()

	var mu sync.Mutex
	seen := map[string]int{} // command -> Draining while it ran
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			cmd, _ := bufio.NewReader(conn).ReadString('\n')
			cmd = strings.TrimSpace(cmd)
			mu.Lock()
			seen[cmd] = rt.Draining()
			mu.Unlock()
			conn.Close()
		}
	}()

	old := []byte(base)
	new := []byte(strings.Replace(base, "    server web-2 10.0.0.2:80 check\n", "", 1))
	if applied, err := rt.Apply(context.Background(), old, new); applied || err == nil {
		t.Fatalf("Apply = %v, %v; want the fake's empty server state to fail the check", applied, err)
	}
	mu.Lock()
	defer mu.Unlock()
	n, ok := seen["set server web/web-2 state maint"]
	if !ok {
		t.Fatalf("no maintenance command for web-2; commands: %v", seen)
	}
	if n != 1 {
		t.Errorf("Draining while web-2's maintenance command ran = %d, want 1", n)
	}
	if d := rt.Draining(); d != 0 {
		t.Errorf("Draining after the failed Apply = %d, want 0", d)
	}
}
