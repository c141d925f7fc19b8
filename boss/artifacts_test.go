package boss_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// A build with a directory and a file, and a failing test that keeps its coverage.
const artifactsPipedef = `import bettertest as bt
p = bt.pipeline("arts")
with p.stage("build") as s:
    s.build("make", image="bettertest/base:bookworm",
            command="mkdir -p /out/sub && printf 'hello\\n' > /out/a.txt && printf 'x' > /out/sub/b && chmod 755 /out/sub/b"
                    " && ln -s a.txt /out/link && ln /out/a.txt /out/hard && printf 'tool' > /tool",
            outputs=["/out", "/tool"])
with p.stage("test") as s:
    s.test("check", image="bettertest/base:bookworm", command="mkdir /coverage && echo 42% > /coverage/index.html && exit 1",
           artifacts=["/coverage"])
`

// download gets an artifact through the boss: status, the headers that
// matter and the body.
func download(t *testing.T, b *wt.Boss, path string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(b.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := fmt.Sprintf("%s; %s; %s", resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"), resp.Header.Get("Content-Length"))
	return resp.StatusCode, h, body
}

// entries lists a tar: name, type, mode, and content or link target.
func entries(t *testing.T, data []byte) []string {
	t.Helper()
	return wt.TarEntries(t, data, func(h *tar.Header, content []byte) string {
		return fmt.Sprintf("%s %c %o %q %s", h.Name, h.Typeflag, h.Mode, content, h.Linkname)
	})
}

func artifactOf(t *testing.T, run bettertest.Run, task, path string) bettertest.ArtifactEvent {
	t.Helper()
	for _, st := range run.Stages {
		for _, tk := range st.Tasks {
			for _, a := range tk.Artifacts {
				if tk.Name == task && a.Path == path {
					return a
				}
			}
		}
	}
	t.Fatalf("run #%d has no artifact %s of %s: %+v", run.ID, path, task, run.Stages)
	return bettertest.ArtifactEvent{}
}

// A run's artifacts download through the boss from its worker: a file as
// itself, a directory as a tar named after it; a cached build names the run
// that built it; an artifact the worker no longer has, or a worker that is
// gone, is told so.
func TestArtifactsDownloadThroughTheBoss(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{CacheSize: "1MiB"})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "arts", artifactsPipedef)}, Workers: []*wt.Worker{worker}})
	w := watch(t, boss, "/api/events")
	w.until(t, "the worker up", func() bool { return w.workers["w0"].Up })
	first := trigger(t, boss, "arts")
	w.until(t, "run 1 to end", func() bool { return w.status(first.ID) == "failed" })
	var run bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", first.ID), &run)

	tool := artifactOf(t, run, "make", "/tool")
	status, headers, body := download(t, boss, bettertest.ArtifactPath(run.ID, tool.ID))
	if status != 200 || headers != "application/octet-stream; attachment; filename=tool; 4" || string(body) != "tool" {
		t.Fatalf("the file artifact: %d %s %q", status, headers, body)
	}
	status, headers, body = download(t, boss, bettertest.ArtifactPath(run.ID, artifactOf(t, run, "make", "/out").ID))
	if status != 200 || headers != "application/x-tar; attachment; filename=out.tar; " {
		t.Fatalf("the directory artifact: %d %s %s", status, headers, body)
	}
	want := []string{
		`out/ 5 755 "" `,
		`out/a.txt 0 644 "hello\n" `,
		`out/hard 1 644 "" out/a.txt`,
		`out/link 2 777 "" a.txt`,
		`out/sub/ 5 755 "" `,
		`out/sub/b 0 755 "x" `,
	}
	if got := entries(t, body); !reflect.DeepEqual(got, want) {
		t.Fatalf("the directory's tar:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A failed test's kept artifacts, like a build's outputs, with the attempt that kept them.
	coverage := artifactOf(t, run, "check", "/coverage")
	if coverage.Attempt != 1 || tool.Attempt != 0 {
		t.Fatalf("the attempts that kept the artifacts: %+v %+v", coverage, tool)
	}
	status, _, body = download(t, boss, bettertest.ArtifactPath(run.ID, coverage.ID))
	if got := entries(t, body); status != 200 || !reflect.DeepEqual(got, []string{`coverage/ 5 755 "" `, `coverage/index.html 0 644 "42%\n" `}) {
		t.Fatalf("the test's coverage: %d %q", status, got)
	}

	// The next run's build comes from the cache, built by the first.
	second := trigger(t, boss, "arts")
	w.until(t, "run 2 to end", func() bool { return w.status(second.ID) == "failed" })
	var again bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", second.ID), &again)
	if make := again.Stages[0].Tasks[0]; !make.Cached || make.BuiltBy != first.ID {
		t.Fatalf("the cached build: %+v", make)
	}

	for _, c := range []struct{ path, want string }{
		{fmt.Sprintf("/api/runs/%d/artifacts/%s", run.ID, strings.Repeat("0", 64)),
			fmt.Sprintf(`404 {"error":"run #%d has no artifact sha256:%s: its task pages list the artifacts it has"}`, run.ID, strings.Repeat("0", 64))},
		{fmt.Sprintf("/api/runs/%d/artifacts/..%%2F..%%2Fetc", run.ID),
			`400 {"error":"\"..%2F..%2Fetc\" is not an artifact id: use the 64 lowercase hex digits after sha256: of one of the run's artifacts"}`},
		{"/api/runs/99/artifacts/" + strings.TrimPrefix(tool.ID, "sha256:"), `404 {"error":"no run 99"}`},
	} {
		status, _, body := download(t, boss, c.path)
		if got := fmt.Sprintf("%d %s", status, strings.TrimSpace(string(body))); got != c.want {
			t.Errorf("GET %s:\n got %s\nwant %s", c.path, got, c.want)
		}
	}

	// An upload that with them would pass the worker's --cache-size (1 MiB)
	// has it evict them, the least recently used first.
	var blob bytes.Buffer
	tw := tar.NewWriter(&blob)
	data := bytes.Repeat([]byte("z"), 1_046_000) // all but 1 KiB of it
	if err := tw.WriteHeader(&tar.Header{Name: "artifact", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	sum := sha256.Sum256(blob.Bytes())
	resp, err := worker.Do(t.Context(), http.MethodPut, "/artifacts/"+hex.EncodeToString(sum[:]), &blob)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %v %+v", err, resp)
	}
	resp.Body.Close()
	status, _, body = download(t, boss, bettertest.ArtifactPath(run.ID, tool.ID))
	if want := fmt.Sprintf(`{"error":"worker w0 no longer has /tool of task make of run #%d (it makes room for newer artifacts within its --cache-size): run the pipeline again to make it anew"}`, run.ID); status != 410 || strings.TrimSpace(string(body)) != want {
		t.Fatalf("an evicted artifact: %d %s", status, body)
	}

	if err := worker.Stop(); err != nil {
		t.Fatal(err)
	}
	status, _, body = download(t, boss, bettertest.ArtifactPath(run.ID, tool.ID))
	addr := strings.TrimPrefix(worker.URL, "http://")
	if want := fmt.Sprintf(`{"error":"/tool of task make of run #%d is kept by worker w0, which cannot be reached (dial tcp %s: connect: connection refused): start it again, or run the pipeline again to make it anew"}`, run.ID, addr); status != 502 || strings.TrimSpace(string(body)) != want {
		t.Fatalf("a worker that is gone: %d %s", status, body)
	}
}

// A worker and a boss started with relative --data-dir paths, as a user
// types them, run a build whose output mounts into a test: the sandbox's
// mounts and Docker's need absolute paths, which they make of them.
func TestRelativeDataDirs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := wt.NewTokenFile(t, dir)
	wcmd := exec.Command(bin, "worker", "--listen", "127.0.0.1:0", "--token-file", "token", "--data-dir", "worker-data")
	wcmd.Dir = dir
	worker, addr := wt.StartProcess(t, "worker", wcmd)
	t.Cleanup(func() {
		if err := worker.Stop(); err != nil {
			t.Errorf("the worker did not stop cleanly: %v\n%s", err, worker.Stderr())
		}
	})
	code := `import bettertest as bt
p = bt.pipeline("rel")
with p.stage("build") as s:
    app = s.build("make", image="bettertest/base:bookworm", command="mkdir /out && echo built > /out/x", outputs=["/out"])
with p.stage("test") as s:
    s.test("use", image="bettertest/base:bookworm", command="cat /app/out/x", inputs={"/app": app})
`
	bcmd := exec.Command(bin, "boss", "--listen", "127.0.0.1:0", "--data-dir", "boss-data", "--workers-dir", "workers",
		"--worker", "w0=http://"+addr, "--worker-token-file", "w0="+token, "--pipedef", pipedef(t, dir, "rel", code))
	bcmd.Dir = dir
	p, baddr := wt.StartProcess(t, "boss", bcmd)
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("the boss did not stop cleanly: %v\n%s", err, p.Stderr())
		}
	})
	boss := &wt.Boss{URL: "http://" + baddr, Process: p}
	w := watch(t, boss, "/api/events")
	r := trigger(t, boss, "rel")
	w.until(t, "the run to end", func() bool { return w.status(r.ID) == "passed" || w.status(r.ID) == "failed" })
	var run bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", r.ID), &run)
	if run.Status != "passed" {
		t.Fatalf("the run %s: %s %+v; the pipedef said %q", run.Status, run.Error, run.Stages, logText(t, boss, fmt.Sprintf("/api/runs/%d/log", r.ID)))
	}
	if got := logText(t, boss, fmt.Sprintf("/api/runs/%d/tasks/use/log", r.ID)); got != "built\n" {
		t.Fatalf("the test said %q", got)
	}
}
