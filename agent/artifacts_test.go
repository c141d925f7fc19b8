package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/sse"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// entry is one file of a test archive; a name ending in "/" is a directory.
type entry struct{ name, content string }

// archive builds an artifact archive as the Python library packs one.
func archive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.content))}
		if strings.HasSuffix(e.name, "/") {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func put(t *testing.T, w *wt.Worker, data []byte) (int, string) {
	t.Helper()
	return putAs(t, w, digest(data), data)
}

func putAs(t *testing.T, w *wt.Worker, hexID string, data []byte) (int, string) {
	t.Helper()
	resp, err := w.Do(context.Background(), http.MethodPut, "/artifacts/"+hexID, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// head returns the status and Content-Length of HEAD /artifacts/HEX.
func head(t *testing.T, w *wt.Worker, hexID string) (int, int64) {
	t.Helper()
	resp, err := w.Do(context.Background(), http.MethodHead, "/artifacts/"+hexID, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.ContentLength
}

func get(t *testing.T, w *wt.Worker, id string) []byte {
	t.Helper()
	resp, err := w.Do(context.Background(), http.MethodGet, "/artifacts/"+strings.TrimPrefix(id, "sha256:"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("GET %s: %d %s %v", id, resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	return data
}

// listing describes every entry of an archive: type, mode, owner, time, name,
// link and content.
func listing(t *testing.T, data []byte) []string {
	t.Helper()
	return wt.TarEntries(t, data, func(h *tar.Header, content []byte) string {
		return fmt.Sprintf("%c %o %d:%d %d %s %s %q", h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), h.Name, h.Linkname, content)
	})
}

func artifactFiles(t *testing.T, w *wt.Worker) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(w.DataDir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestArtifactRoundTripAndDedupe(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	random := make([]byte, 3<<20)
	_, _ = rand.Read(random)
	data := archive(t, entry{"artifact/", ""}, entry{"artifact/random", string(random)})
	id := digest(data)
	if status, _ := head(t, w, id); status != 404 {
		t.Fatalf("HEAD before the upload: %d, want 404", status)
	}
	if status, body := put(t, w, data); status != 201 || body != fmt.Sprintf(`{"created":true,"id":"sha256:%s","size":%d}`+"\n", id, len(data)) {
		t.Fatalf("first upload: %d %s", status, body)
	}
	if status, body := put(t, w, data); status != 200 || body != fmt.Sprintf(`{"created":false,"id":"sha256:%s","size":%d}`+"\n", id, len(data)) {
		t.Fatalf("second upload: %d %s", status, body)
	}
	if status, size := head(t, w, id); status != 200 || size != int64(len(data)) {
		t.Fatalf("HEAD: %d %d, want 200 %d", status, size, len(data))
	}
	if got := get(t, w, id); !bytes.Equal(got, data) {
		t.Fatalf("GET returned %d bytes that differ from the %d uploaded", len(got), len(data))
	}
	if files := artifactFiles(t, w); !reflect.DeepEqual(files, []string{id}) {
		t.Fatalf("stored files %v, want the one artifact once", files)
	}
}

// A client that dies half-way through an upload leaves nothing visible.
func TestPartialUploadIsNeverVisible(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	data := archive(t, entry{"artifact", strings.Repeat("x", 1<<20)})
	id := digest(data)
	conn, err := net.Dial("tcp", strings.TrimPrefix(w.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /artifacts/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", id, w.Token, len(data))
	if _, err := conn.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	answer, _ := io.ReadAll(conn) // the worker answers once it sees the body end early
	conn.Close()
	if !strings.HasPrefix(string(answer), "HTTP/1.1 400 ") {
		t.Fatalf("answer to a cut upload: %q", answer)
	}
	if status, _ := head(t, w, id); status != 404 {
		t.Fatalf("HEAD after a cut upload: %d, want 404", status)
	}
	if files := artifactFiles(t, w); len(files) != 0 {
		t.Fatalf("a cut upload left %v", files)
	}
	// The same upload, whole, works.
	if status, body := put(t, w, data); status != 201 {
		t.Fatalf("whole upload: %d %s", status, body)
	}
}

func TestArchivesThatAreNotArtifactsAreRefused(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"no artifact root", archive(t, entry{"etc/passwd", "x"}), `entry "etc/passwd" is outside the top-level "artifact" entry that every artifact archive has`},
		{"escape", archive(t, entry{"artifact/", ""}, entry{"artifact/../../x", "x"}), `entry "artifact/../../x" is not a clean relative path`},
		{"two roots", archive(t, entry{"artifact", "a"}, entry{"artifact", "b"}), `the archive has a second top-level "artifact" entry`},
		{"empty", archive(t), `the archive is empty: it needs its top-level "artifact" entry`},
		{"symlink root", func() []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "artifact", Typeflag: tar.TypeSymlink, Linkname: "/etc"})
			tw.Close()
			return buf.Bytes()
		}(), `the top-level "artifact" entry is a link: it must be a file or a directory`},
	} {
		id := digest(c.data)
		status, body := put(t, w, c.data)
		want := fmt.Sprintf(`{"error":"artifact sha256:%s was not stored: not an artifact archive: %s"}`+"\n", id, strings.ReplaceAll(c.msg, `"`, `\"`))
		if status != 400 || body != want {
			t.Errorf("%s: %d %s, want 400 %s", c.name, status, body, want)
		}
	}
	if files := artifactFiles(t, w); len(files) != 0 {
		t.Fatalf("refused uploads left %v", files)
	}
}

// runArtifacts reads a run's events, checks that each artifact event names
// archive content with that digest and size, and blanks the ids so the
// events can be compared exactly. It returns the archives by path.
func runArtifacts(t *testing.T, w *wt.Worker, evs []sse.Event) ([]decoded, map[string][]byte) {
	t.Helper()
	got := normalize(t, evs)
	archives := map[string][]byte{}
	for i, d := range got {
		if a, ok := d.Data.(bettertest.ArtifactEvent); ok && a.ID != "" {
			data := get(t, w, a.ID)
			if "sha256:"+digest(data) != a.ID || int64(len(data)) != a.Size {
				t.Fatalf("artifact %+v: got %d bytes with sha256 %s", a, len(data), digest(data))
			}
			archives[a.Path] = data
			got[i].Data = bettertest.ArtifactEvent{Path: a.Path}
		}
	}
	return got, archives
}

func artifactEv(path string) decoded {
	return decoded{"artifact", bettertest.ArtifactEvent{Path: path}}
}
func resultEv(path string) decoded { return decoded{"result", bettertest.ArtifactEvent{Path: path}} }
func uncached(reason string) decoded {
	return decoded{"uncached", bettertest.UncachedEvent{Reason: reason}}
}
func cachedEv() decoded { return decoded{"cached", bettertest.CachedEvent{}} }

func TestInputsAreMountedReadOnlyAndOutputsArePackedCanonically(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	src := archive(t, entry{"artifact/", ""}, entry{"artifact/a.txt", "from the laptop\n"})
	greeting := archive(t, entry{"artifact", "hello\n"})
	for _, data := range [][]byte{src, greeting} {
		if status, body := put(t, w, data); status != 201 {
			t.Fatalf("upload: %d %s", status, body)
		}
	}
	req := run(`echo "$(cat /src/a.txt /etc/greeting; touch /src/new 2>&1 | sed 's/.*: //')"
		mkdir -p /out/sub && printf 'built\n' > /out/sub/b && printf '#!/bin/sh\n' > /out/a.sh && chmod 4755 /out/a.sh
		ln -s sub/b /out/link && ln /out/sub/b /out/z-hardlink && touch -d 2001-01-01 /out/sub/b && chown 1000:1000 /out/a.sh
		printf 'one file\n' > /single`)
	req.Inputs = map[string]string{"/src": "sha256:" + digest(src), "/etc/greeting": "sha256:" + digest(greeting)}
	req.Outputs = []string{"/out", "/single"}
	got, archives := runArtifacts(t, w, w.Run(t, req).All(t))
	want := []decoded{started(), stdout("from the laptop\nhello\nRead-only file system\n"), artifactEv("/out"), artifactEv("/single"), exit(0)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n got %+v\nwant %+v", got, want)
	}
	wantOut := []string{
		`5 755 0:0 0 artifact/  ""`,
		`0 755 0:0 0 artifact/a.sh  "#!/bin/sh\n"`,
		`2 777 0:0 0 artifact/link sub/b ""`,
		`5 755 0:0 0 artifact/sub/  ""`,
		`0 644 0:0 0 artifact/sub/b  "built\n"`,
		`1 644 0:0 0 artifact/z-hardlink artifact/sub/b ""`,
	}
	if l := listing(t, archives["/out"]); !reflect.DeepEqual(l, wantOut) {
		t.Fatalf("/out packed as\n%s\nwant\n%s", strings.Join(l, "\n"), strings.Join(wantOut, "\n"))
	}
	if l := listing(t, archives["/single"]); !reflect.DeepEqual(l, []string{`0 644 0:0 0 artifact  "one file\n"`}) {
		t.Fatalf("/single packed as %q", l)
	}

	// An output is an input of the next run, mounted where the run asks.
	next := run(`echo "$(cat /app/out/sub/b /app/out/link; ls -l /app/out/a.sh | cut -c1-10)"`)
	next.Inputs = map[string]string{"/app/out": "sha256:" + digest(archives["/out"])}
	assertEvents(t, w.Run(t, next).All(t), started(), stdout("built\nbuilt\n-rwxr-xr-x\n"), exit(0))
}

func TestMissingOutputFailsTheRunAndNamesIt(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	req := run("mkdir /out")
	req.Outputs = []string{"/out", "/out/app"}
	got, _ := runArtifacts(t, w, w.Run(t, req).All(t))
	want := []decoded{started(), artifactEv("/out"),
		errorEv("output /out/app does not exist after the command: make the command create it, or fix the path in outputs"), exit(0)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n got %+v\nwant %+v", got, want)
	}
	// An output that is a symlink would be mounted as what it points to.
	link := run("ln -s /etc /link")
	link.Outputs = []string{"/link"}
	assertEvents(t, w.Run(t, link).All(t), started(), errorEv("output /link is a link: name the file or directory it points to"), exit(0))
	// A failed command's outputs are not collected at all.
	req.Command = "mkdir /out; exit 3"
	assertEvents(t, w.Run(t, req).All(t), started(), exit(3))
}

func TestBuildCache(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	w := wt.Start(t, bin, wt.Options{DataDir: dataDir})
	src := archive(t, entry{"artifact", "v1\n"})
	put(t, w, src)
	build := run("echo compiling; mkdir /out; cat /src > /out/app")
	build.Inputs = map[string]string{"/src": "sha256:" + digest(src)}
	build.Outputs = []string{"/out"}
	build.Cache, build.Name = true, "hello/compile"

	first, firstOut := runArtifacts(t, w, w.Run(t, build).All(t))
	if want := []decoded{uncached("first run"), started(), stdout("compiling\n"), artifactEv("/out"), exit(0)}; !reflect.DeepEqual(first, want) {
		t.Fatalf("first build:\n got %+v\nwant %+v", first, want)
	}
	// The same build again: no container, the same artifact.
	evs := w.Run(t, build).All(t)
	second, secondOut := runArtifacts(t, w, evs)
	if want := []decoded{cachedEv(), artifactEv("/out"), exit(0)}; !reflect.DeepEqual(second, want) {
		t.Fatalf("second build:\n got %+v\nwant %+v", second, want)
	}
	if !bytes.Equal(firstOut["/out"], secondOut["/out"]) {
		t.Fatal("the cached build answered with other outputs")
	}
	// A test (no "cache") never uses the cache, even with the same inputs.
	test := build
	test.Cache, test.Name = false, ""
	got, _ := runArtifacts(t, w, w.Run(t, test).All(t))
	if want := []decoded{started(), stdout("compiling\n"), artifactEv("/out"), exit(0)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("test run:\n got %+v\nwant %+v", got, want)
	}

	// Each change is explained against the build's last run.
	cur := build
	for _, c := range []struct {
		change func(*bettertest.RunRequest)
		reason string
	}{
		{func(r *bettertest.RunRequest) { r.Command += " # v2" }, "command changed"},
		{func(r *bettertest.RunRequest) {
			v2 := archive(t, entry{"artifact", "v2\n"})
			put(t, w, v2)
			r.Inputs = map[string]string{"/src": "sha256:" + digest(v2)}
		}, "input /src changed"},
		{func(r *bettertest.RunRequest) { r.Env = map[string]string{"CC": "clang"} }, "env CC added"},
		{func(r *bettertest.RunRequest) { r.Command, r.Env = "exit 1", nil }, "command changed, env CC removed"},
		{func(r *bettertest.RunRequest) {}, "its last run failed"},
	} {
		c.change(&cur)
		evs := normalize(t, w.Run(t, cur).All(t))
		if !reflect.DeepEqual(evs[0], uncached(c.reason)) {
			t.Errorf("want %q: first event %+v", c.reason, evs[0])
		}
	}

	// The cache survives a restart.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	again := wt.Start(t, bin, wt.Options{DataDir: dataDir})
	after, afterOut := runArtifacts(t, again, again.Run(t, build).All(t))
	if want := []decoded{cachedEv(), artifactEv("/out"), exit(0)}; !reflect.DeepEqual(after, want) {
		t.Fatalf("after a restart:\n got %+v\nwant %+v", after, want)
	}
	if !bytes.Equal(firstOut["/out"], afterOut["/out"]) {
		t.Fatal("after a restart the cache answered with other outputs")
	}
}

// With a small --cache-size the least recently used artifacts go first, and a
// build whose outputs went runs again and says why.
func TestEvictionIsLeastRecentlyUsedFirst(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{CacheSize: "100KiB"})
	blob := func(c string) []byte { return archive(t, entry{"artifact", strings.Repeat(c, 40000)}) }
	a, b, c := blob("a"), blob("b"), blob("c")
	put(t, w, a)
	put(t, w, b)
	head(t, w, digest(a)) // a is now used more recently than b
	put(t, w, c)
	for _, x := range []struct {
		name   string
		data   []byte
		status int
	}{{"b", b, 404}, {"a", a, 200}, {"c", c, 200}} {
		if status, _ := head(t, w, digest(x.data)); status != x.status {
			t.Errorf("HEAD %s: %d, want %d", x.name, status, x.status)
		}
	}
	if status, body := put(t, w, archive(t, entry{"artifact", strings.Repeat("x", 200<<10)})); status != 413 ||
		!strings.HasPrefix(body, `{"error":"the artifact is 206336 bytes, more than this worker's --cache-size of 102400 bytes: raise --cache-size"}`) {
		t.Fatalf("too big: %d %s", status, body)
	}

	build := run("mkdir /out; head -c 60000 /dev/zero > /out/big")
	build.Outputs, build.Cache, build.Name = []string{"/out"}, true, "p/big"
	normalize(t, w.Run(t, build).All(t))
	put(t, w, blob("d")) // pushes the build's output out
	if evs := normalize(t, w.Run(t, build).All(t)); !reflect.DeepEqual(evs[0], uncached("its outputs were evicted")) {
		t.Fatalf("after eviction: %+v", evs)
	}
}

func TestOneWorkerPerDataDir(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	cmd := exec.Command(bin, "worker", "--listen", "127.0.0.1:0", "--token-file", w.TokenFile, "--data-dir", w.DataDir)
	out, err := cmd.CombinedOutput()
	want := fmt.Sprintf("bettertest worker: --data-dir %s is in use by another worker (pid %d): stop it, or give each worker a data dir of its own\n", w.DataDir, w.Pid())
	if err == nil || string(out) != want {
		t.Fatalf("second worker on one data dir: %v\n%s\nwant %s", err, out, want)
	}
}

// A test's results are collected whatever its exit code, even after a
// timeout; a results path the command did not make is skipped.
func TestResultsAreCollectedEvenWhenTheCommandFails(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	req := run(`mkdir /reports && echo '<testsuite/>' > /reports/junit.xml && exit 3`)
	req.Results = []string{"/reports/junit.xml", "/reports/missing.json"}
	req.Outputs = []string{"/reports"}
	got, archives := runArtifacts(t, w, w.Run(t, req).All(t))
	if want := []decoded{started(), resultEv("/reports/junit.xml"), exit(3)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n got %+v\nwant %+v", got, want)
	}
	if l := listing(t, archives["/reports/junit.xml"]); !reflect.DeepEqual(l, []string{`0 644 0:0 0 artifact  "<testsuite/>\n"`}) {
		t.Fatalf("results archive: %q", l)
	}
	timedOut := run(`mkdir /reports && echo partial > /reports/r.json && sleep 300`)
	timedOut.Results, timedOut.TimeoutS = []string{"/reports/r.json"}, 1
	got, _ = runArtifacts(t, w, w.Run(t, timedOut).All(t))
	want := []decoded{started(), resultEv("/reports/r.json"),
		errorEv("timed out after 1 s and was killed: raise timeout_s if the command needs longer"), exit(137)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after a timeout:\n got %+v\nwant %+v", got, want)
	}
}
