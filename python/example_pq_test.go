package python_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
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
	// shards had as a service started in the same container, as the same user. As the
	// pipeline retries a failed shard once, the tests that failed run once more, and each
	// case counts by its last run: lib/pq has timing-bound tests (TestContextCancelQuery)
	// that a loaded machine fails now and then.
	ran, again := goTestJSON(t, tag, project, "./...")
	for _, args := range again {
		t.Logf("lib/pq's go test failed a test, run again as the pipeline's retry would: go test %s", args)
		rerun, _ := goTestJSON(t, tag, project, args)
		maps.Copy(ran, rerun)
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

// goTestJSON runs go test -json ARGS in lib/pq's source, in image tag beside a PostgreSQL
// server, and returns the status of each test it ran by PACKAGE.TEST, and the arguments
// that run each failed test again (the whole top-level test: -run splits its pattern at
// slashes). A run whose tests fail is a result; one that fails otherwise (a build error)
// fails t.
func goTestJSON(t *testing.T, tag, project, args string) (ran map[string]string, again []string) {
	t.Helper()
	cmd := exec.Command("docker", "run", "--rm", "-v", filepath.Join(project, "src")+":/src:ro", tag, "sh", "-c",
		`pg_ctlcluster 15 main start >&2 && su tester -c 'cd /src && PGHOST=localhost PGUSER=postgres go test -json `+args+`'`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	events, err := cmd.Output()
	ran = map[string]string{}
	lines := bufio.NewScanner(bytes.NewReader(events))
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var e struct{ Action, Package, Test string }
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatalf("go test -json line %q: %v", lines.Bytes(), err)
		}
		status, ok := map[string]string{"pass": "passed", "fail": "failed", "skip": "skipped"}[e.Action]
		if !ok || e.Test == "" {
			continue
		}
		ran[e.Package+"."+e.Test] = status
		if top, _, _ := strings.Cut(e.Test, "/"); status == "failed" {
			again = append(again, "."+strings.TrimPrefix(e.Package, "github.com/lib/pq")+` -run "^`+regexp.QuoteMeta(top)+`$"`)
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	if err != nil && len(again) == 0 {
		t.Fatalf("go test -json %s in %s: %v\n%s\n%s", args, tag, err, stderr.Bytes(), events)
	}
	slices.Sort(again)
	return ran, slices.Compact(again)
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
