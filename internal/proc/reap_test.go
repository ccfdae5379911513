package proc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/autopilot/autopilot/internal/testenv"
)

func TestSiginfoLayout(t *testing.T) {
	if got, want := unsafe.Sizeof(siginfoChild{}), unsafe.Sizeof(unix.Siginfo{}); got != want {
		t.Errorf("sizeof(siginfoChild) = %d; want sizeof(unix.Siginfo) = %d", got, want)
	}
	// si_pid follows three ints, pointer-aligned: 16 on 64-bit, 12 on 32-bit.
	want := uintptr(12)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		want = 16
	}
	if got := unsafe.Offsetof(siginfoChild{}.Pid); got != want {
		t.Errorf("offset of Pid = %d; want %d", got, want)
	}
}

func TestNilReaper(t *testing.T) {
	var r *Reaper
	cmd := helperCmd("exit", "5")
	if err := r.Start(cmd); err != nil {
		t.Fatal(err)
	}
	var xe *exec.ExitError
	if err := r.Wait(cmd); !errors.As(err, &xe) || xe.ExitCode() != 5 {
		t.Errorf("Wait = %v; want exit status 5", err)
	}
}

// TestReaperFailedStart: a command that never started must not be
// registered, or Run would wait for its owner forever.
func TestReaperFailedStart(t *testing.T) {
	r := NewReaper(zerolog.Nop())
	cmd := exec.Command("/nonexistent/autopilot")
	if err := r.Start(cmd); err == nil {
		t.Fatal("Start of a missing program succeeded")
	}
	if err := r.Wait(cmd); err == nil {
		t.Error("Wait of a command that never started succeeded")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.active) != 0 {
		t.Errorf("active = %v after a failed Start; want empty", r.active)
	}
}

// startZombie starts cmd with start and waits until it has exited but is
// not yet reaped. It asks waitid rather than /proc: a multi-threaded child
// shows as a zombie in /proc before its last thread is gone, and only then
// can it be waited for.
func startZombie(t *testing.T, cmd *exec.Cmd, start func(*exec.Cmd) error) int {
	t.Helper()
	if err := start(cmd); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waitFor(t, 20*time.Second, fmt.Sprintf("child %d to become waitable", pid), func() (bool, string) {
		var info siginfoChild
		err := unix.Waitid(unix.P_PID, pid, (*unix.Siginfo)(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err == nil && int(info.Pid) == pid, fmt.Sprintf("pid %d, %v", info.Pid, err)
	})
	return pid
}

// TestReaperLeavesOwnedZombie is the core property, made deterministic: an
// owned child is already a zombie when the reaper drains, and its owner must
// still get its exit status. The control shows the test would catch a thief:
// with os/exec waiting on a pidfd, a stolen status surfaces as ECHILD.
func TestReaperLeavesOwnedZombie(t *testing.T) {
	if !isolated(t) {
		return
	}
	t.Run("control: stolen status", func(t *testing.T) {
		cmd := helperCmd("exit", "7")
		pid := startZombie(t, cmd, (*exec.Cmd).Start)
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); !errors.Is(err, syscall.ECHILD) {
			t.Fatalf("Wait after the status was stolen = %v; want ECHILD", err)
		}
	})

	t.Run("drain waits for the owner", func(t *testing.T) {
		r := NewReaper(zerolog.Nop())
		cmd := helperCmd("exit", "7")
		pid := startZombie(t, cmd, r.Start)
		if got, err := peekExited(); got != pid || err != nil {
			t.Fatalf("peekExited = %d, %v; want %d", got, err, pid)
		}
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			r.drain(context.Background())
		}()
		var xe *exec.ExitError
		if err := r.Wait(cmd); !errors.As(err, &xe) || xe.ExitCode() != 7 {
			t.Fatalf("owner's Wait = %v; want exit status 7", err)
		}
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			t.Fatal("drain still blocked 10s after the owner's Wait")
		}
		if got, err := peekExited(); !errors.Is(err, unix.ECHILD) {
			t.Errorf("peekExited = %d, %v after Wait; want ECHILD", got, err)
		}
	})

	t.Run("Run returns on cancel while an owner is awaited", func(t *testing.T) {
		var logs testenv.Buffer
		r := NewReaper(zerolog.New(&logs))
		cmd := helperCmd("exit", "7")
		pid := startZombie(t, cmd, r.Start)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			r.Run(ctx)
		}()
		waitFor(t, 10*time.Second, "Run to leave the zombie to its owner", func() (bool, string) {
			return strings.Contains(logs.String(), fmt.Sprintf(`"pid":%d,"message":"reaper: child exited; leaving it to its owner"`, pid)), logs.String()
		})
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10s after cancel")
		}
		if err := r.Wait(cmd); ExitCode(err) != 7 {
			t.Errorf("Wait = %v; want exit status 7", err)
		}
	})
}

// TestReaperReapsOrphans runs the supervisor's situation at scale: as a
// subreaper, orphans die around us while many short commands run through a
// Runner. Every orphan must be reaped, and no command may lose its status.
func TestReaperReapsOrphans(t *testing.T) {
	if !isolated(t) {
		return
	}
	if err := BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	var flag int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&flag)), 0, 0, 0); err != nil || flag != 1 {
		t.Fatalf("PR_GET_CHILD_SUBREAPER = %d, %v; want 1", flag, err)
	}

	var logs testenv.Buffer
	r := NewReaper(zerolog.New(&logs))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		r.Run(ctx)
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	run := &Runner{Reaper: r, Env: slices.Clone(helperEnv)}

	const (
		batches  = 4
		perBatch = 25
		orphans  = batches * perBatch
		commands = 200
		workers  = 8
	)
	var wg sync.WaitGroup
	failures := make(chan string, commands+batches)

	// Orphans: each helper forks sleepers and exits at once, so they are
	// re-parented to us and die while the commands below run.
	wg.Go(func() {
		for i := 0; i < batches; i++ {
			d := fmt.Sprintf("%dms", 10+i*60)
			if err := run.Run(ctx, helper("orphans", fmt.Sprint(perBatch), d)); err != nil {
				failures <- fmt.Sprintf("orphan batch %d: %v", i, err)
			}
		}
	})

	// Commands with varied outcomes, so a wrong or stolen status shows.
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := range jobs {
				c, want := helper("exit", "0"), 0
				switch i % 3 {
				case 1:
					code := 1 + i%250
					c, want = helper("exit", fmt.Sprint(code)), code
				case 2:
					c, want = helper("signal", "15"), 128+15
				}
				err := run.Run(ctx, c)
				switch {
				case errors.Is(err, syscall.ECHILD):
					failures <- fmt.Sprintf("command %d: status stolen: %v", i, err)
				case ExitCode(err) != want:
					failures <- fmt.Sprintf("command %d: %v (exit code %d); want %d", i, err, ExitCode(err), want)
				}
			}
		})
	}
	for i := 0; i < commands; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}

	waitFor(t, 30*time.Second, "all orphans reaped", func() (bool, string) {
		reaped := strings.Count(logs.String(), `"message":"reaped orphan"`)
		zombies := zombieChildren(t)
		return reaped == orphans && len(zombies) == 0,
			fmt.Sprintf("%d of %d orphans reaped, zombie children %v", reaped, orphans, zombies)
	})
	if strings.Contains(logs.String(), `"level":"error"`) {
		t.Errorf("reaper logged errors:\n%s", logs.String())
	}
	r.mu.Lock()
	if len(r.active) != 0 {
		t.Errorf("active = %v after all commands; want empty", r.active)
	}
	r.mu.Unlock()
}
