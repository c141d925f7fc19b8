package enroll

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Progress of a step that takes a while: the bytes of an upload sent, the
// package apt is unpacking (from its status fd, APT::Status-Fd). On a
// terminal it is one live line, rewritten in place, from the step's first
// second on; otherwise a plain line for each milestone (a quarter of an
// upload, a package unpacked). The --json report has none.

// progressDelay is how long a step runs before its progress is shown.
const progressDelay = time.Second

// liveInterval bounds how often the live line is rewritten.
const liveInterval = 100 * time.Millisecond

// liveWidth keeps the live line on one row of a narrow terminal: \r only
// goes back to the start of the row.
const liveWidth = 79

// progress is one report of a step under way.
type progress struct {
	text      string
	milestone bool // worth a plain line when not on a terminal
}

// uploadProgress counts the bytes of an upload as the SSH session reads them.
type uploadProgress struct {
	r           io.Reader
	sent, total int64
	quarter     int64
	report      func(progress)
}

func (u *uploadProgress) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if n > 0 {
		u.sent += int64(n)
		q := u.sent * 4 / max(u.total, 1)
		u.report(progress{text: fmt.Sprintf("sent %s of %s", megabytes(u.sent), megabytes(u.total)), milestone: q > u.quarter})
		u.quarter = max(q, u.quarter)
	}
	return n, err
}

func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// aptProgress reads apt-get's status lines ("pmstatus:PKG:PERCENT:WHAT")
// from a command's stdout.
type aptProgress struct {
	partial []byte
	report  func(progress)
}

func (a *aptProgress) Write(p []byte) (int, error) {
	a.partial = append(a.partial, p...)
	for {
		i := bytes.IndexByte(a.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(a.partial[:i])
		a.partial = a.partial[i+1:]
		f := strings.SplitN(line, ":", 4)
		if len(f) != 4 || f[0] != "pmstatus" {
			continue
		}
		percent, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		a.report(progress{text: fmt.Sprintf("%.0f%% %s", percent, f[3]), milestone: strings.HasPrefix(f[3], "Unpacking ")})
	}
}

// progress shows p for host's step, which began at since.
func (r *reporter) progress(host, step string, since time.Time, p progress) {
	if r.json {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if now.Sub(since) < progressDelay {
		return
	}
	if !r.terminal {
		if p.milestone {
			fmt.Fprintf(r.out, "progress [%s] %s: %s\n", host, step, p.text)
		}
		return
	}
	if r.live && now.Sub(r.liveAt) < liveInterval && !p.milestone {
		return
	}
	line := []rune(fmt.Sprintf("…        [%s] %s: %s", host, step, p.text))
	if len(line) > liveWidth {
		line = append(line[:liveWidth-1], '…')
	}
	fmt.Fprintf(r.out, "\r\x1b[K%s", string(line))
	r.live, r.liveAt = true, now
}

// endLive clears the live line before a line of the report.
func (r *reporter) endLive() {
	if r.live {
		fmt.Fprint(r.out, "\r\x1b[K")
		r.live = false
	}
}

func (r *reporter) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}
