package supervisor

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ignoreSIGPIPE keeps a broken stdout or stderr from killing the supervisor.
//
// A Go program dies of SIGPIPE when it writes to a closed pipe on fd 1 or
// 2, unless it is notified of SIGPIPE (os/signal: "If the program is not
// calling Notify ... for SIGPIPE, a write to a broken pipe on file
// descriptors 1 or 2 will cause the program to exit with a SIGPIPE
// signal"); signal.Ignore would also make our children inherit SIG_IGN.
// With Notify the write fails with EPIPE instead, and DropEPIPE turns that
// into a silently dropped log line: PID 1 and its app live on when whoever
// read their log goes away.
func ignoreSIGPIPE() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// DropEPIPE wraps the supervisor's log writer: a write to a broken pipe
// (EPIPE) is reported as done, so the logger neither fails nor retries; the
// line is lost, the supervisor keeps running.
func DropEPIPE(w io.Writer) io.Writer { return epipeWriter{w} }

type epipeWriter struct{ w io.Writer }

func (e epipeWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && errors.Is(err, syscall.EPIPE) {
		return len(p), nil
	}
	return n, err
}
