// Package execx is the thin side-effect layer that runs ip and iptables.
package execx

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Runner runs a command with optional stdin and returns its stdout.
// A non-nil error carries the command line, the exit status and stderr.
type Runner interface {
	Run(ctx context.Context, stdin string, name string, args ...string) (string, error)
}

// OS runs real processes, each bounded by Timeout (default 30s).
type OS struct {
	Timeout time.Duration
}

// Run implements Runner.
func (o OS) Run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &Error{Cmd: CommandLine(name, args), Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.String(), nil
}

// Error is a failed command.
type Error struct {
	Cmd    string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Stderr)
}

func (e *Error) Unwrap() error { return e.Err }

// CommandLine renders a command for logs, quoting arguments that contain spaces.
func CommandLine(name string, args []string) string {
	parts := make([]string, 0, len(args)+1)
	parts = append(parts, name)
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = fmt.Sprintf("%q", a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Call is one command recorded by Fake.
type Call struct {
	Stdin string
	Name  string
	Args  []string
}

// Line is the call's command line (see CommandLine).
func (c Call) Line() string { return CommandLine(c.Name, c.Args) }

// Fake is a Runner for tests: it records calls and answers with Respond
// (nil Respond: empty output, no error).
type Fake struct {
	Calls   []Call
	Respond func(c Call) (string, error)
}

// Run implements Runner.
func (f *Fake) Run(_ context.Context, stdin string, name string, args ...string) (string, error) {
	c := Call{Stdin: stdin, Name: name, Args: append([]string(nil), args...)}
	f.Calls = append(f.Calls, c)
	if f.Respond == nil {
		return "", nil
	}
	return f.Respond(c)
}

// Lines returns the command lines of all recorded calls.
func (f *Fake) Lines() []string {
	out := make([]string, len(f.Calls))
	for i, c := range f.Calls {
		out[i] = c.Line()
	}
	return out
}
