package bettertest

import (
	"strconv"
	"strings"
)

// The boss's HTTP API. Times are milliseconds since the Unix epoch, 0 when
// the moment has not come yet.

// Run statuses. A run is queued until a worker is free, running while its
// pipedef runs, and then one of the others for good.
const (
	StatusQueued      = "queued"
	StatusRunning     = "running"
	StatusPassed      = "passed"
	StatusFailed      = "failed"
	StatusSkipped     = "skipped"     // stages and tasks only
	StatusCancelled   = "cancelled"   // someone cancelled it
	StatusInterrupted = "interrupted" // the boss stopped while it ran
	// A pull request from a fork by an author the boss does not trust: it
	// runs once an operator approves it (POST /api/runs/ID/approve, key a).
	StatusAwaitingApproval = "awaiting_approval"
)

// Run is one run of a pipeline.
type Run struct {
	ID         int64  `json:"id"`
	Pipeline   string `json:"pipeline"`
	Status     string `json:"status"`
	Trigger    string `json:"trigger"` // api, ui, cli, schedule, push, pull_request
	Worker     string `json:"worker"`  // "" until it starts
	CreatedMS  int64  `json:"created_ms"`
	StartedMS  int64  `json:"started_ms"`
	FinishedMS int64  `json:"finished_ms"`
	ExitCode   *int   `json:"exit_code"` // the pipedef's, once it exited
	Error      string `json:"error"`     // why it failed, when not only a task's exit code says so
	// For a pipeline from a repository: the commit tested, the ref it was
	// pushed to, its author and a link to it ("" when not known yet).
	Commit    string  `json:"commit"`
	Ref       string  `json:"ref"`
	Author    string  `json:"author"`
	CommitURL string  `json:"commit_url"`
	Stages    []Stage `json:"stages,omitempty"`
	// Tests counts its test cases; nil (left out) when it has none.
	Tests *TestCounts `json:"tests,omitempty"`
}

// Stage is one stage of a run.
type Stage struct {
	Name       string `json:"name"`
	Status     string `json:"status"` // running, passed, failed, skipped
	StartedMS  int64  `json:"started_ms"`
	FinishedMS int64  `json:"finished_ms"`
	Tasks      []Task `json:"tasks"`
	// Tests counts its tasks' test cases; nil (left out) when they have none.
	Tests *TestCounts `json:"tests,omitempty"`
}

// Task is one build or test of a run.
type Task struct {
	Stage      string          `json:"stage"`
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`   // build or test
	Status     string          `json:"status"` // running, passed, failed, skipped
	ExitCode   *int            `json:"exit_code"`
	Cached     bool            `json:"cached"`
	Reason     string          `json:"reason"` // why a build was not cached
	Error      string          `json:"error"`
	StartedMS  int64           `json:"started_ms"`
	FinishedMS int64           `json:"finished_ms"`
	Artifacts  []ArtifactEvent `json:"artifacts"`
	// BuiltBy is, for a build answered from the cache, the run that built
	// its outputs, when the boss knows it (0: it does not).
	BuiltBy int64 `json:"built_by,omitempty"`
	// WaitedMS is how long, between its start and its end, it waited, and
	// WaitedFor for what: its image, a slot of the worker, a dependency
	// cache ("its image", "a slot", "the cache pip"); that is not its work.
	WaitedMS  int64    `json:"waited_ms,omitempty"`
	WaitedFor []string `json:"waited_for,omitempty"`
	// A test's attempts: 1, more when it was retried, 0 while it runs.
	Attempts int `json:"attempts"`
	// Flaky: an attempt failed and a later one passed, on the same commit.
	Flaky bool `json:"flaky"`
	// Quarantined: it failed, but only in quarantined tests, so the run did not fail.
	Quarantined bool `json:"quarantined"`
	// Tests counts its test cases; nil (left out) for a build, and for a
	// test before its first attempt ends.
	Tests *TestCounts `json:"tests,omitempty"`
}

// Test outcomes of one test case in one run, as TestResult.Status holds
// them and FlakyTest.History lists them.
const (
	OutcomeFlaky = "flaky" // failed, then passed when retried
)

// TestResult is one attempt of one test case in a run. A test task whose
// pipedef declares results has a TestResult per test case the results file
// lists; a test task without results is one test case itself.
type TestResult struct {
	Task       string `json:"task"`
	Case       string `json:"case"`    // "" for the task itself
	Test       string `json:"test"`    // the test's id: TASK, or SUITE/CASE (SUITE is the task's name unless it names one)
	Attempt    int    `json:"attempt"` // from 1
	Status     string `json:"status"`  // passed, failed, skipped
	DurationMS int64  `json:"duration_ms"`
	Output     string `json:"output"` // a failure's message and output
}

// TestRun is what one test did in one run.
type TestRun struct {
	RunID   int64  `json:"run_id"`
	Commit  string `json:"commit"`
	Outcome string `json:"outcome"` // passed, failed or flaky
}

// FlakyTest is a test the boss lists as flaky, or one that is quarantined,
// with the evidence.
type FlakyTest struct {
	Pipeline string `json:"pipeline"`
	Test     string `json:"test"` // TASK or TASK/CASE
	Flaky    bool   `json:"flaky"`
	// Why it is listed: the rules it met, in words.
	Reasons []string `json:"reasons"`
	// FlipRate is the share of consecutive runs in History whose outcomes differ.
	FlipRate float64 `json:"flip_rate"`
	// Evidence is the runs that show the flakiness, newest first.
	Evidence []TestRun `json:"evidence"`
	// History is the runs the rules looked at, newest first.
	History []TestRun `json:"history"`
	// Quarantined: its failures do not fail runs. QuarantinedBy says who
	// quarantined it: "flag" (the boss's --quarantine) or "ui".
	Quarantined   bool   `json:"quarantined"`
	QuarantinedBy string `json:"quarantined_by"`
	// CleanRuns is how many runs in a row it has now passed cleanly.
	CleanRuns int `json:"clean_runs"`
}

// Chunk is a piece of a task's output.
type Chunk struct {
	Stream string `json:"stream"` // stdout or stderr
	Text   string `json:"text"`
}

// WorkerInfo is what the boss knows of a worker.
type WorkerInfo struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Up       bool   `json:"up"`    // its event stream is connected and it is ready
	Error    string `json:"error"` // why it is down
	Version  string `json:"version"`
	Docker   string `json:"docker"`
	Running  int    `json:"running"`  // runs executing on it, from any client
	Capacity int    `json:"capacity"` // runs it executes at once
	Assigned int    `json:"assigned"` // pipeline runs the boss has given it
	// ChangedMS is when it last went up or down.
	ChangedMS int64 `json:"changed_ms"`
	// Removed: the boss no longer has this worker (its record was removed).
	Removed bool `json:"removed,omitempty"`
}

// Pipeline is one pipedef the boss runs.
type Pipeline struct {
	Name    string `json:"name"`
	Path    string `json:"path"` // the pipedef; in Repo when that is set
	Repo    string `json:"repo"` // the git repository it comes from, if any
	LastRun *Run   `json:"last_run"`
}

// Event names of the boss's GET /api/events stream. Each carries the whole
// new state of the thing that changed.
const (
	BossEventRun    = "run"    // Run, without stages
	BossEventStage  = "stage"  // StageEvent
	BossEventTask   = "task"   // TaskEvent
	BossEventOutput = "output" // OutputChunkEvent
	BossEventWorker = "worker" // WorkerInfo
	BossEventTests  = "tests"  // TestResultsEvent
	BossEventFlaky  = "flaky"  // FlakyEvent: the flaky list of a pipeline changed
)

// TestResultsEvent is the test results of one attempt of a test task,
// reported by a running pipedef: one event however many test cases it ran.
type TestResultsEvent struct {
	RunID   int64        `json:"run_id"`
	Task    string       `json:"task"`
	Attempt int          `json:"attempt"`
	Results []TestResult `json:"results"`
}

// FlakyEvent says a pipeline's flaky tests or quarantine changed; GET
// /api/flaky has the new list.
type FlakyEvent struct {
	Pipeline string `json:"pipeline"`
}

// QuarantineRequest is the body of POST /api/quarantine.
type QuarantineRequest struct {
	Pipeline    string `json:"pipeline"`
	Test        string `json:"test"`        // TASK or TASK/CASE
	Quarantined bool   `json:"quarantined"` // false releases it
}

// StageEvent is a stage that changed, without its tasks.
type StageEvent struct {
	RunID int64 `json:"run_id"`
	Stage
}

// TaskEvent is a task that changed.
type TaskEvent struct {
	RunID int64 `json:"run_id"`
	Task
}

// OutputChunkEvent is output of a task, or of the pipedef itself when Task is "".
type OutputChunkEvent struct {
	RunID int64  `json:"run_id"`
	Task  string `json:"task"`
	Seq   int    `json:"seq"` // the chunk's index in the task's output, from 0
	Chunk
}

// TriggerRequest is the optional body of POST /api/pipelines/{name}/runs.
type TriggerRequest struct {
	Trigger string `json:"trigger,omitempty"` // who asked: api (default), ui or cli
}

// WorkerRecord is a worker's NAME.json in a workers directory, written by
// enrollment and read by the boss; its token is NAME.token beside it.
type WorkerRecord struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// ArtifactPath is where the boss serves an artifact of a run (GET): id is
// "sha256:HEX", as a task's artifacts name it.
func ArtifactPath(runID int64, id string) string {
	return "/api/runs/" + strconv.FormatInt(runID, 10) + "/artifacts/" + strings.TrimPrefix(id, "sha256:")
}

// WorkMS is how long a task that ended worked: from its start to its end,
// less what it waited (WaitedMS); 0 while it runs.
func (t Task) WorkMS() int64 {
	if t.StartedMS == 0 || t.FinishedMS == 0 {
		return 0
	}
	return max(0, t.FinishedMS-t.StartedMS-t.WaitedMS)
}

// WaitedForText names what a task waited for, for people: "a slot" when
// its pipedef did not say (an older library).
func (t Task) WaitedForText() string {
	if len(t.WaitedFor) == 0 {
		return "a slot"
	}
	return strings.Join(t.WaitedFor, ", ")
}
