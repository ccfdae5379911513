package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Container-shaped tests without Docker. A Bridge is a Linux bridge with a
// private /24 that the test creates; each Container on it has its own
// network namespace (a veth `eth0` on the bridge, its own loopback), PID
// namespace (its command is PID 1, as autopilot is in a container) and UTS
// namespace (its own hostname). It is `ip netns exec NS unshare --pid
// --fork --mount-proc --uts` underneath, so it needs root (CI runs as
// root); elsewhere the test skips saying why.
//
// Only NetnsSubnet is ever configured, and nothing is routed beyond it:
// the containers reach each other and the host's bridge address, nothing
// else. Everything is named with netnsPrefix and removed when the test
// ends, on every exit path: t.Cleanup stops the containers and deletes
// the namespaces and the bridge; the container processes die with the test
// process (Pdeathsig, and unshare --kill-child takes the whole PID
// namespace with it); and what a crashed run left behind (namespaces,
// links with the prefix) is removed before the next one starts. Runs are
// serialised machine-wide with a lock file, since they share the names and
// the subnet.
const (
	// NetnsSubnet is the only network the containers get.
	NetnsSubnet = "10.213.7.0/24"
	// NetnsGateway is the host's address on the bridge.
	NetnsGateway = "10.213.7.1"
	netnsPrefix  = "aptn"
	netnsBridge  = netnsPrefix + "-br"
	netnsLock    = "autopilot-netns.lock"
)

// Bridge is the test's network; see the comment above.
type Bridge struct {
	t      testing.TB
	lock   *os.File
	logDir string

	mu         sync.Mutex
	next       int // last host octet handed out
	containers []*Container
}

// NewBridge creates the bridge (removing a crashed run's leftovers first)
// or skips the test when namespaces cannot be made here.
func NewBridge(t testing.TB) *Bridge {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("container-shaped tests need root (network, PID and UTS namespaces); CI runs them as root")
	}
	for _, bin := range []string{"ip", "unshare", "hostname"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, ok := findBin(bin, "/usr/sbin", "/sbin", "/bin", "/usr/bin"); !ok {
				t.Skipf("container-shaped tests need %s (iproute2, util-linux; make test installs them): %v", bin, err)
			}
		}
	}
	lock := lockNetns(t)
	// The logs' directory is made before teardown is registered, so that it
	// is removed after teardown has shown the logs of a failed test.
	b := &Bridge{t: t, lock: lock, next: 1, logDir: t.TempDir()}
	t.Cleanup(b.teardown)
	removeNetnsLeftovers(t)
	// Probe what a container needs, so that a machine (or an unprivileged
	// container) that lacks it skips with the reason instead of failing.
	probe := netnsPrefix + "-probe"
	if out, err := ipCmd("netns", "add", probe); err != nil {
		t.Skipf("cannot create a network namespace here (%v: %s): namespaces not permitted", err, out)
	}
	out, err := exec.Command("ip", "netns", "exec", probe, "unshare", "--pid", "--fork", "--mount-proc", "--uts", "true").CombinedOutput()
	ipCmd("netns", "del", probe)
	if err != nil {
		t.Skipf("cannot create PID and UTS namespaces here (unshare: %v: %s): namespaces not permitted", err, strings.TrimSpace(string(out)))
	}
	if out, err := ipCmd("link", "add", netnsBridge, "type", "bridge"); err != nil {
		t.Skipf("cannot create a bridge here (%v: %s): network namespaces not permitted", err, out)
	}
	// Bridged frames must not go through the host's iptables FORWARD chain
	// (br_netfilter): the test's traffic is not the firewall's business.
	// Older kernels lack the option; the default policy then decides.
	ipCmd("link", "set", netnsBridge, "type", "bridge", "nf_call_iptables", "0")
	b.must("addr", "add", NetnsGateway+"/24", "dev", netnsBridge)
	b.must("link", "set", netnsBridge, "up")
	return b
}

// lockNetns takes the machine-wide lock of the names and the subnet: held
// by a Bridge for its life, and by whoever checks that nothing is left
// (another test binary's Bridge may exist at any other time).
func lockNetns(t testing.TB) *os.File {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), netnsLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	return lock
}

// unlockNetns releases lockNetns's lock.
func unlockNetns(lock *os.File) {
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	lock.Close()
}

func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (b *Bridge) must(args ...string) {
	b.t.Helper()
	if out, err := ipCmd(args...); err != nil {
		b.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// removeNetnsLeftovers deletes namespaces and links named with the prefix:
// what a run killed before its cleanup left behind. The caller holds the
// lock, so nothing with the prefix belongs to a live run.
func removeNetnsLeftovers(t testing.TB) {
	out, _ := ipCmd("netns", "list")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], netnsPrefix+"-") {
			continue
		}
		killNetnsPIDs(f[0])
		if out, err := ipCmd("netns", "del", f[0]); err != nil {
			t.Logf("removing leftover namespace %s: %v: %s", f[0], err, out)
		}
	}
	out, _ = ipCmd("-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, netnsPrefix) {
			ipCmd("link", "del", name)
		}
	}
}

// killNetnsPIDs kills every process in namespace ns.
func killNetnsPIDs(ns string) {
	out, _ := ipCmd("netns", "pids", ns)
	for _, s := range strings.Fields(out) {
		if pid, err := strconv.Atoi(s); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (b *Bridge) teardown() {
	b.mu.Lock()
	cs := b.containers
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Stop(20 * time.Second)
		}()
	}
	wg.Wait()
	if b.t.Failed() {
		for _, c := range cs {
			b.t.Logf("--- log of container %s (%s):\n%s", c.Name, c.IP, logTail(c.LogPath, 60))
		}
	}
	for _, c := range cs {
		killNetnsPIDs(c.NS)
		// Deleting the host's end removes the pair at once; left to the
		// namespace's deletion, the kernel's cleanup work removes it
		// later, which took over 10 s on a loaded machine.
		ipCmd("link", "del", c.veth)
		ipCmd("netns", "del", c.NS)
	}
	ipCmd("link", "del", netnsBridge)
	// Wait so the next run starts clean.
	if out, err := waitFor(30*time.Second, 50*time.Millisecond, func() (bool, string, error) {
		out, _ := ipCmd("-o", "link", "show")
		return !strings.Contains(out, netnsPrefix), out, nil
	}); err != nil {
		b.t.Errorf("netns teardown: links left after 30 s:\n%s", out)
	}
	unlockNetns(b.lock)
}

// Container is one process tree in its own namespaces on the bridge.
type Container struct {
	Name    string // also its hostname
	IP      string // eth0's address
	NS      string // network namespace name
	LogPath string // its stdout and stderr
	Cmd     *exec.Cmd
	veth    string
	logDir  string
	done    chan struct{}
	code    int
}

// AddContainer creates the namespaces' network side (the netns, a veth
// pair with eth0 inside on the bridge, lo up) for a container called name,
// with the next address of the subnet. Start runs its command.
func (b *Bridge) AddContainer(name string) *Container {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	n := b.next
	b.mu.Unlock()
	if n > 254 {
		b.t.Fatal("netns: subnet exhausted")
	}
	c := &Container{Name: name, IP: fmt.Sprintf("10.213.7.%d", n), NS: fmt.Sprintf("%s-%s", netnsPrefix, name),
		veth: fmt.Sprintf("%sv%d", netnsPrefix, n), logDir: b.logDir, done: make(chan struct{})}
	b.must("netns", "add", c.NS)
	b.mu.Lock()
	b.containers = append(b.containers, c)
	b.mu.Unlock()
	b.must("link", "add", c.veth, "type", "veth", "peer", "name", "eth0", "netns", c.NS)
	b.must("link", "set", c.veth, "master", netnsBridge, "up")
	b.must("-n", c.NS, "addr", "add", c.IP+"/24", "dev", "eth0")
	b.must("-n", c.NS, "link", "set", "eth0", "up")
	b.must("-n", c.NS, "link", "set", "lo", "up")
	return c
}

// Start runs argv as PID 1 of the container (own PID and UTS namespaces,
// hostname = its name, /proc of its own), with env as its whole
// environment and its output in a file under the test's temp dir.
func (c *Container) Start(t testing.TB, env []string, argv ...string) {
	t.Helper()
	c.LogPath = filepath.Join(c.logDir, c.Name+".log")
	f, err := os.Create(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args := append([]string{"netns", "exec", c.NS, "unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child",
		"sh", "-c", `hostname "$0" || exit 125; exec "$@"`, c.Name}, argv...)
	c.Cmd = exec.Command("ip", args...)
	c.Cmd.Env = env
	c.Cmd.Stdout, c.Cmd.Stderr = f, f
	// The container dies with the test process: unshare gets SIGKILL, and
	// --kill-child takes PID 1, hence the whole PID namespace, with it.
	c.Cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.Cmd.Start(); err != nil {
		t.Fatalf("start container %s: %v", c.Name, err)
	}
	go func() {
		c.Cmd.Wait()
		c.code = ExitCode(c.Cmd)
		close(c.done)
	}()
}

// PID1 is the host pid of the container's PID 1, or 0 if it is not there
// yet. It is one process throughout: unshare's fork, which execs sh to set
// the hostname, which execs the command.
func (c *Container) PID1() int {
	if c.Cmd == nil || c.Cmd.Process == nil {
		return 0
	}
	// ip netns exec execs unshare, whose only child is PID 1.
	if kids := children(c.Cmd.Process.Pid); len(kids) > 0 {
		return kids[0]
	}
	return 0
}

// Comm is the command name PID 1 runs now ("" if none): a test waits for
// it to be the container's command before it signals it.
func (c *Container) Comm() string {
	pid := c.PID1()
	if pid == 0 {
		return ""
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// Signal sends sig to the container's PID 1, as `docker kill -s` does.
func (c *Container) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	var pid int
	Eventually(t, 10*time.Second, func() (bool, string) {
		pid = c.PID1()
		return pid != 0, "container " + c.Name + " has no PID 1 yet"
	})
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("container %s: %v: %v", c.Name, sig, err)
	}
}

// Exited reports whether the container's PID 1 has exited.
func (c *Container) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Done is closed when the container has exited; Code is then valid.
func (c *Container) Done() <-chan struct{} { return c.done }

// Code is PID 1's exit code (128+N when killed by signal N).
func (c *Container) Code() int { <-c.done; return c.code }

// Log is what the container wrote so far.
func (c *Container) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

// Stop sends SIGTERM to PID 1 and waits up to grace, then kills the
// container (unshare, hence its PID namespace).
func (c *Container) Stop(grace time.Duration) {
	if c.Cmd == nil || c.Cmd.Process == nil {
		return
	}
	if !c.Exited() {
		if pid := c.PID1(); pid != 0 {
			syscall.Kill(pid, syscall.SIGTERM)
		} else {
			c.Cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-c.done:
		case <-time.After(grace):
			c.Cmd.Process.Kill()
			<-c.done
		}
	}
	killNetnsPIDs(c.NS)
}

// Partition makes c and other unreachable from each other (a blackhole
// route to the other's address in both namespaces). Packets are dropped;
// a local sender gets EINVAL for a new packet, so new connections fail at
// once while open ones hang, their peer's answers lost.
func (c *Container) Partition(t testing.TB, other *Container) {
	t.Helper()
	c.Blackhole(t, other)
	other.Blackhole(t, c)
}

// Heal removes Partition's routes.
func (c *Container) Heal(t testing.TB, other *Container) {
	t.Helper()
	c.Unblackhole(t, other)
	other.Unblackhole(t, c)
}

// Blackhole drops, in c's namespace only, every packet c sends to other:
// with it on the server's side alone, the client's packets arrive and
// nothing comes back, which the client sees as a silent hang (a hung
// server, or a partition that drops rather than rejects).
func (c *Container) Blackhole(t testing.TB, other *Container) {
	t.Helper()
	if out, err := ipCmd("-n", c.NS, "route", "add", "blackhole", other.IP+"/32"); err != nil {
		t.Fatalf("blackhole %s -> %s: %v: %s", c.Name, other.Name, err, out)
	}
}

// Unblackhole removes Blackhole's route (none: nothing to do).
func (c *Container) Unblackhole(t testing.TB, other *Container) {
	t.Helper()
	out, err := ipCmd("-n", c.NS, "route", "show", "type", "blackhole", other.IP+"/32")
	if err != nil || strings.TrimSpace(out) == "" {
		return
	}
	if out, err := ipCmd("-n", c.NS, "route", "del", "blackhole", other.IP+"/32"); err != nil {
		t.Fatalf("unblackhole %s -> %s: %v: %s", c.Name, other.Name, err, out)
	}
}
