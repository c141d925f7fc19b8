package enroll

import (
	"bytes"
	"io"
	"sync"
)

// sudo with a password (--ask-become-pass). sudo -S reads the password from
// the command's stdin, but only when it asks for one: with credentials it
// has cached, or a NOPASSWD rule, it asks nothing, and a password written
// ahead would become the command's input. So nothing is written before sudo
// says what it wants on stderr: its prompt (sudoPrompt, then the password is
// written once), or the command's first line (sudoReady: sudo let it run,
// and the command's own stdin follows). A second prompt means the password
// was wrong: stdin is closed and sudo gives up. The password is never in an
// argument, a file or a log; the markers are taken out of stderr.
const (
	sudoPrompt = "[bettertest: sudo password]"
	sudoReady  = "bettertest: sudo ok\n"
)

// becomeCommand runs cmd as root through sudo -S with the markers above.
func becomeCommand(cmd string) string {
	return "sudo -S -p " + shellQuote(sudoPrompt) + " sh -c " + shellQuote("printf 'bettertest: sudo ok\\n' >&2 && exec "+cmd)
}

// becomeFeeder is the session's stdin and stderr when sudo asks for a password.
type becomeFeeder struct {
	password []byte
	stdin    io.Reader // the command's own input, or nil
	stderr   io.Writer

	mu      sync.Mutex
	w       *io.PipeWriter
	head    []byte // stderr seen before sudoReady, held back to find the markers
	asked   bool
	started bool // sudo let the command run: stderr passes through
	closed  bool
}

// newBecomeFeeder returns the feeder and the reader to give the session as stdin.
func newBecomeFeeder(password []byte, stdin io.Reader, stderr io.Writer) (*becomeFeeder, io.Reader) {
	r, w := io.Pipe()
	return &becomeFeeder{password: password, stdin: stdin, stderr: stderr, w: w}, r
}

// Write is the session's stderr.
func (f *becomeFeeder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started {
		return f.stderr.Write(p)
	}
	f.head = append(f.head, p...)
	for {
		if i := bytes.Index(f.head, []byte(sudoPrompt)); i >= 0 {
			f.stderr.Write(f.head[:i])
			f.head = f.head[i+len(sudoPrompt):]
			if f.asked {
				f.closeLocked() // a second prompt: the password was refused
				continue
			}
			f.asked = true
			// Written from another goroutine: the pipe blocks until sudo
			// reads, and sudo reads while this session goes on.
			line := append(append([]byte(nil), f.password...), '\n')
			go func() {
				f.w.Write(line)
				clear(line)
			}()
			continue
		}
		if i := bytes.Index(f.head, []byte(sudoReady)); i >= 0 {
			f.stderr.Write(f.head[:i])
			rest := f.head[i+len(sudoReady):]
			f.head, f.started = nil, true
			go f.feed()
			_, err := f.stderr.Write(rest)
			return len(p), err
		}
		return len(p), nil
	}
}

// feed copies the command's own input once sudo let it run.
func (f *becomeFeeder) feed() {
	if f.stdin != nil {
		io.Copy(f.w, f.stdin)
	}
	f.mu.Lock()
	f.closeLocked()
	f.mu.Unlock()
}

func (f *becomeFeeder) closeLocked() {
	if !f.closed {
		f.closed = true
		f.w.Close()
	}
}

// finish closes stdin and passes on what stderr held back when the command
// never started (sudo refused), once the session has ended.
func (f *becomeFeeder) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closeLocked()
	if !f.started {
		f.stderr.Write(f.head)
		f.head = nil
	}
}
