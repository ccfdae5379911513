package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// DefaultTimeout bounds one CLI command when the caller's context has no
// earlier deadline. A healthy HAProxy answers in microseconds; a worker
// stuck long enough to hit this is better reloaded than waited for.
const DefaultTimeout = 5 * time.Second

// Client runs commands on one HAProxy CLI socket: a worker's stats socket
// (`stats socket PATH level admin`) or the master CLI (`haproxy -S PATH`).
// Each command uses its own connection (HAProxy's non-interactive mode:
// one command, one answer, then HAProxy closes), so a Client is safe for
// concurrent use and holds no state between calls.
type Client struct {
	// Addr is a unix socket path, or host:port for a TCP socket.
	Addr    string
	Timeout time.Duration // per command; 0 means DefaultTimeout
}

// DialError says the socket could not be reached: HAProxy is not running,
// or the path is wrong. Nothing was sent.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("haproxy socket %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// Exec sends cmd and returns HAProxy's whole answer. An error means the
// command may not have run (dial, write) or its answer was cut short; a
// refusal by HAProxy is an answer, not an error: see CommandError.
func (c Client) Exec(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\n;") {
		return "", fmt.Errorf("haproxy command %q: newlines and ';' would run several commands", cmd)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network := "unix"
	if !strings.Contains(c.Addr, "/") {
		if _, _, err := net.SplitHostPort(c.Addr); err == nil {
			network = "tcp"
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, c.Addr)
	if err != nil {
		return "", &DialError{Addr: c.Addr, Err: err}
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Close the connection when ctx ends early (cancellation), so the read
	// below returns at once rather than at the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy %s: %q: %w", c.Addr, cmd, err)
	}
	// Half-closing ends the session: the master CLI answers and closes
	// only then, as a worker's stats socket does anyway.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return string(b), fmt.Errorf("haproxy %s: %q: %w", c.Addr, cmd, err)
	}
	return string(b), nil
}

// CommandError is a command HAProxy refused, with its answer.
type CommandError struct {
	Command string
	Answer  string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("haproxy refused %q: %s", e.Command, e.Answer)
}

// Run is Exec for commands whose answer says whether they worked: it
// returns a *CommandError unless the answer is the one HAProxy 2.6 gives on
// success.
func (c Client) Run(ctx context.Context, cmd string) error {
	out, err := c.Exec(ctx, cmd)
	if err != nil {
		return err
	}
	if a := strings.TrimSpace(out); !succeeded(cmd, a) {
		return &CommandError{Command: cmd, Answer: a}
	}
	return nil
}

// succeeded reads the answer of a command that changes a server.
func succeeded(cmd, answer string) bool {
	switch {
	case strings.HasPrefix(cmd, "add server "):
		return answer == "New server registered."
	case strings.HasPrefix(cmd, "del server "):
		return answer == "Server deleted."
	case strings.HasPrefix(cmd, "set server ") && strings.Contains(cmd, " addr "):
		return strings.HasPrefix(answer, "IP changed from") || strings.HasPrefix(answer, "no need to change the addr")
	}
	return answer == ""
}

// isDial reports whether err means the socket was not reached.
func isDial(err error) bool {
	var d *DialError
	return errors.As(err, &d)
}
