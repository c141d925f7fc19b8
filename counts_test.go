package bettertest

import (
	"encoding/json"
	"testing"
)

func TestCountCases(t *testing.T) {
	r := func(task, test string, attempt int, status string) TestResult {
		return TestResult{Task: task, Test: test, Attempt: attempt, Status: status}
	}
	results := []TestResult{
		r("unit", "unit/a", 1, StatusPassed),
		r("unit", "unit/b", 1, StatusFailed),
		r("unit", "unit/c", 1, StatusFailed),
		r("unit", "unit/d", 1, StatusSkipped),
		r("unit", "unit/b", 2, StatusPassed), // flaky: failed, then passed
		r("unit", "unit/c", 2, StatusFailed), // failed twice: one failed case
		r("lint", "lint", 1, StatusFailed),   // a test without results is one case
		r("shard-2", "unit/a", 1, StatusPassed),
	}
	got, err := json.Marshal(CountCases(results))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"lint":{"passed":0,"failed":1,"skipped":0,"flaky":0},"shard-2":{"passed":1,"failed":0,"skipped":0,"flaky":0},"unit":{"passed":1,"failed":1,"skipped":1,"flaky":1}}`
	if string(got) != want {
		t.Errorf("CountCases\n got %s\nwant %s", got, want)
	}
	failing, err := json.Marshal(Failing(results))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"task":"unit","case":"","test":"unit/b","attempt":1,"status":"failed","duration_ms":0,"output":""},` +
		`{"task":"unit","case":"","test":"unit/c","attempt":1,"status":"failed","duration_ms":0,"output":""},` +
		`{"task":"unit","case":"","test":"unit/b","attempt":2,"status":"passed","duration_ms":0,"output":""},` +
		`{"task":"unit","case":"","test":"unit/c","attempt":2,"status":"failed","duration_ms":0,"output":""},` +
		`{"task":"lint","case":"","test":"lint","attempt":1,"status":"failed","duration_ms":0,"output":""}]`; string(failing) != want {
		t.Errorf("Failing\n got %s\nwant %s", failing, want)
	}
	run := Run{Stages: []Stage{
		{Name: "build", Tasks: []Task{{Name: "compile"}}},
		{Name: "test", Tasks: []Task{{Name: "unit"}, {Name: "lint"}, {Name: "shard-2"}}},
	}}
	SetCounts(&run, CountCases(results))
	if got, want := run.Tests.String(), "2 failed, 1 flaky, 2 passed, 1 skipped"; got != want {
		t.Errorf("run counts %q, want %q", got, want)
	}
	if run.Stages[0].Tests != nil || run.Stages[0].Tasks[0].Tests != nil {
		t.Errorf("a stage of builds has counts %v", run.Stages[0].Tests)
	}
	if got, want := (TestCounts{}).String(), "no test cases"; got != want {
		t.Errorf("no counts %q, want %q", got, want)
	}
}
