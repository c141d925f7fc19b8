package python_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bettertest/bettertest/internal/workertest"
)

var bin string

func TestMain(m *testing.M) { workertest.Main(m, &bin) }

// The example of a real project (python/examples/pq.py: lib/pq, fetched through the Go module
// proxy) runs on a real worker, and its test cases, as its shards' JUnit results report them,
// are exactly those that lib/pq's own runner reports when `go test -json ./...` runs directly
// in the same image, against the same PostgreSQL.
func TestExamplePQReportsWhatGoTestReports(t *testing.T) {
	workertest.Integration(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", filepath.Join(repo, "scripts/get-example-pq.sh")).Output()
	if err != nil {
		t.Fatalf("scripts/get-example-pq.sh: %v\n%s", err, stderrOf(err))
	}
	project := strings.TrimSpace(string(out))

	w := workertest.Start(t, bin, workertest.Options{MaxParallel: 4}) // as make example-pq: its tests wait on their server
	cmd := exec.Command("python3", filepath.Join(repo, "python/examples/pq.py"),
		"--worker", w.URL, "--token-file", w.TokenFile, "--project", project, "--report", "jsonl")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(repo, "python"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	report, err := cmd.Output()
	if err != nil {
		t.Fatalf("the pipedef: %v\n%s\n%s", err, stderr.Bytes(), report)
	}

	ends := map[string]string{}
	cases := map[string]string{} // the last attempt's status of each case
	var tag string
	for _, line := range bytes.Split(bytes.TrimSpace(report), []byte("\n")) {
		var e struct {
			Event, Task, Name, Status, Key string
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("report line %q: %v", line, err)
		}
		switch {
		case e.Event == "task_end":
			ends[e.Task] = e.Status
		case e.Event == "test_case":
			cases[e.Name] = e.Status
		case e.Task == "image" && (e.Event == "task_cached" || e.Event == "task_uncached"):
			tag = "bettertest/built:" + strings.TrimPrefix(e.Key, "sha256:")
		}
	}
	want := map[string]string{"image": "passed", "go-junit-report": "passed", "compile": "passed",
		"unit-1": "passed", "unit-2": "passed", "unit-3": "passed", "vet": "passed"}
	if !reflect.DeepEqual(ends, want) {
		t.Fatalf("tasks ended %v, want %v\n%s", ends, want, report)
	}

	// lib/pq's own runner, directly: in the image the pipeline built, with the server its
	// shards had as a service started in the same container, as the same user.
	direct := exec.Command("docker", "run", "--rm", "-v", filepath.Join(project, "src")+":/src:ro", tag, "sh", "-c",
		`pg_ctlcluster 15 main start >&2 && su tester -c 'cd /src && PGHOST=localhost PGUSER=postgres go test -json ./...'`)
	stderr.Reset()
	direct.Stderr = &stderr
	events, err := direct.Output()
	if err != nil {
		t.Fatalf("go test -json ./... in %s: %v\n%s\n%s", tag, err, stderr.Bytes(), events)
	}
	ran := map[string]string{}
	lines := bufio.NewScanner(bytes.NewReader(events))
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var e struct{ Action, Package, Test string }
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatalf("go test -json line %q: %v", lines.Bytes(), err)
		}
		if status, ok := map[string]string{"pass": "passed", "fail": "failed", "skip": "skipped"}[e.Action]; ok && e.Test != "" {
			ran[e.Package+"."+e.Test] = status
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cases, ran) {
		t.Errorf("the pipeline's test cases differ from go test's:\nonly in the pipeline: %v\nonly in go test: %v\nstatuses differ: %v",
			only(cases, ran), only(ran, cases), differ(cases, ran))
	}
	if counts(cases) != counts(ran) {
		t.Errorf("the pipeline counted %+v, go test %+v", counts(cases), counts(ran))
	}
	t.Logf("%d test cases, as go test ran them: %+v", len(ran), counts(ran))
}

type caseCounts struct{ Passed, Failed, Skipped int }

func counts(cases map[string]string) caseCounts {
	var n caseCounts
	for _, status := range cases {
		switch status {
		case "passed":
			n.Passed++
		case "failed":
			n.Failed++
		case "skipped":
			n.Skipped++
		}
	}
	return n
}

func only(a, b map[string]string) []string {
	var names []string
	for name := range a {
		if _, ok := b[name]; !ok {
			names = append(names, name)
		}
	}
	return names
}

func differ(a, b map[string]string) []string {
	var names []string
	for name, status := range a {
		if other, ok := b[name]; ok && other != status {
			names = append(names, name+": "+status+" / "+other)
		}
	}
	return names
}

func stderrOf(err error) []byte {
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.Stderr
	}
	return nil
}
