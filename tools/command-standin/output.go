package main

// Output capture: every byte a command prints is kept for the stdout/stderr
// outputs, and (per the `logging` input) each complete line is also sent to
// the engine as an info message for the resource, so `pulumi up` shows
// progress while the command runs.

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
)

// logFunc sends one line to the engine.
type logFunc func(line string)

type lineWriter struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	log     logFunc // nil: capture only
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	if w.log == nil {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSuffix(string(w.partial[:i]), "\r")
		w.partial = w.partial[i+1:]
		w.log(line)
	}
	return len(p), nil
}

// flush logs a last line that had no newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log != nil && len(w.partial) > 0 {
		w.log(string(w.partial))
	}
	w.partial = nil
}

// text is the captured output minus one trailing newline.
func (w *lineWriter) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSuffix(w.all.String(), "\n")
}

// outputs holds a command's two writers, set up per the `logging` input.
type outputs struct {
	stdout, stderr *lineWriter
}

func newOutputs(logging string, log logFunc) (*outputs, error) {
	var logOut, logErr bool
	switch logging {
	case "", "stdoutAndStderr":
		logOut, logErr = true, true
	case "stdout":
		logOut = true
	case "stderr":
		logErr = true
	case "none":
	default:
		return nil, fmt.Errorf("invalid logging %q: expected stdout, stderr, stdoutAndStderr or none", logging)
	}
	o := &outputs{stdout: &lineWriter{}, stderr: &lineWriter{}}
	if logOut && log != nil {
		o.stdout.log = log
	}
	if logErr && log != nil {
		o.stderr.log = log
	}
	return o, nil
}

func (o *outputs) flush() {
	o.stdout.flush()
	o.stderr.flush()
}

// runError is a failed command: the cause, the command and what it printed.
func runError(cause error, command string, o *outputs) error {
	return fmt.Errorf("%v: running %q:\n%s\n%s", cause, command, o.stdout.text(), o.stderr.text())
}
