package enroll

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bettertest/bettertest/provision"
)

// aptStatus is what apt-get -o APT::Status-Fd=1 -q install prints, in part.
const aptStatus = `Reading package lists...
pmstatus:dpkg-exec:0:Running dpkg
pmstatus:runc:10:Preparing runc (amd64)
pmstatus:runc:20:Unpacking runc (amd64)
pmstatus:docker.io:30:Preparing docker.io (amd64)
pmstatus:docker.io:40.5:Unpacking docker.io (amd64)
pmstatus:docker.io:90:Configuring docker.io (amd64)
pmstatus:docker.io:100:Installed docker.io (amd64)
`

// playProgress feeds a reporter an apt install and an upload of 4 MB, in
// chunks of 1 MB, while a fake clock moves 0.3 s a report.
func playProgress(r *reporter) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	now := start
	r.now = func() time.Time { now = now.Add(300 * time.Millisecond); return now }
	report := func(step string) func(progress) {
		return func(p progress) { r.progress("root@h", step, start, p) }
	}
	// Written in pieces that split lines, as a stream is.
	apt := &aptProgress{report: report("Docker installed")}
	for _, piece := range []string{aptStatus[:50], aptStatus[50:130], aptStatus[130:]} {
		apt.Write([]byte(piece))
	}
	r.event("root@h", provision.Event{Step: "Docker installed", Status: provision.Changed, Duration: 2 * time.Second, Message: "dockerd is missing: installing docker.io"})
	start = now
	up := &uploadProgress{r: strings.NewReader(strings.Repeat("x", 4_000_000)), total: 4_000_000, report: report("bettertest binary")}
	buf := make([]byte, 1_000_000)
	for {
		if _, err := up.Read(buf); err == io.EOF {
			break
		}
	}
	r.event("root@h", provision.Event{Step: "bettertest binary", Status: provision.Changed, Duration: 1200 * time.Millisecond, Message: "not installed"})
}

func TestProgressPlainLines(t *testing.T) {
	var out bytes.Buffer
	playProgress(&reporter{out: &out})
	// The first reports come before the step has run a second: not shown.
	want := `progress [root@h] Docker installed: 40% Unpacking docker.io (amd64)
changed  [root@h] Docker installed (2.00s): dockerd is missing: installing docker.io
progress [root@h] bettertest binary: sent 4.0 MB of 4.0 MB
changed  [root@h] bettertest binary (1.20s): not installed
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestProgressLiveLine(t *testing.T) {
	var out bytes.Buffer
	playProgress(&reporter{out: &out, terminal: true})
	want := "\r\x1b[K…        [root@h] Docker installed: 30% Preparing docker.io (amd64)" +
		"\r\x1b[K…        [root@h] Docker installed: 40% Unpacking docker.io (amd64)" +
		"\r\x1b[K…        [root@h] Docker installed: 90% Configuring docker.io (amd64)" +
		"\r\x1b[K…        [root@h] Docker installed: 100% Installed docker.io (amd64)" +
		"\r\x1b[Kchanged  [root@h] Docker installed (2.00s): dockerd is missing: installing docker.io\n" +
		"\r\x1b[K…        [root@h] bettertest binary: sent 4.0 MB of 4.0 MB" +
		"\r\x1b[Kchanged  [root@h] bettertest binary (1.20s): not installed\n"
	if out.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", out.String(), want)
	}
}
