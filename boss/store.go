package boss

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"syscall"
	"time"

	"modernc.org/sqlite" // the database/sql driver "sqlite", pure Go
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
)

// store keeps the history of runs in SQLite (WAL): every run, its stages and
// tasks, and every task's output. Its writer alone writes, in batches;
// reads go to connections of their own, which WAL lets read while it
// writes, so no read waits for a write or a write for a read.
type store struct {
	dir     string  // the data dir, for what a full disk says
	db      *sql.DB // the writer's connection
	rdb     *sql.DB // read-only connections, for every read
	w       *writer
	history *sql.Stmt // see testHistory
}

const schema = `
CREATE TABLE IF NOT EXISTS runs (
	id          INTEGER PRIMARY KEY,
	pipeline    TEXT NOT NULL,
	status      TEXT NOT NULL,
	trigger     TEXT NOT NULL,
	worker      TEXT NOT NULL DEFAULT '',
	created_ms  INTEGER NOT NULL,
	started_ms  INTEGER NOT NULL DEFAULT 0,
	finished_ms INTEGER NOT NULL DEFAULT 0,
	exit_code   INTEGER,
	error       TEXT NOT NULL DEFAULT '',
	commit_sha  TEXT NOT NULL DEFAULT '',
	ref         TEXT NOT NULL DEFAULT '',
	author      TEXT NOT NULL DEFAULT '',
	commit_url  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, id);
CREATE TABLE IF NOT EXISTS deliveries (
	id          TEXT PRIMARY KEY,
	received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
	run_id      INTEGER NOT NULL REFERENCES runs (id),
	idx         INTEGER NOT NULL,
	name        TEXT NOT NULL,
	status      TEXT NOT NULL,
	started_ms  INTEGER NOT NULL,
	finished_ms INTEGER NOT NULL,
	PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS tasks (
	run_id      INTEGER NOT NULL REFERENCES runs (id),
	idx         INTEGER NOT NULL,
	stage       TEXT NOT NULL,
	name        TEXT NOT NULL,
	kind        TEXT NOT NULL,
	status      TEXT NOT NULL,
	exit_code   INTEGER,
	cached      INTEGER NOT NULL,
	reason      TEXT NOT NULL,
	error       TEXT NOT NULL,
	started_ms  INTEGER NOT NULL,
	finished_ms INTEGER NOT NULL,
	artifacts   TEXT NOT NULL,
	PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS cases (
	run_id      INTEGER NOT NULL REFERENCES runs (id),
	seq         INTEGER NOT NULL,
	pipeline    TEXT NOT NULL,
	test        TEXT NOT NULL,
	task        TEXT NOT NULL,
	name        TEXT NOT NULL,
	attempt     INTEGER NOT NULL,
	status      TEXT NOT NULL,
	duration_ms INTEGER NOT NULL,
	output      TEXT NOT NULL,
	commit_sha  TEXT NOT NULL,
	PRIMARY KEY (run_id, seq)
);
-- Covers the history of a test: judging reads nothing else.
CREATE INDEX IF NOT EXISTS cases_by_test ON cases (pipeline, test, run_id, seq, status, commit_sha);
CREATE TABLE IF NOT EXISTS tests (
	pipeline  TEXT NOT NULL,
	test      TEXT NOT NULL,
	flaky     INTEGER NOT NULL,
	flip_rate REAL NOT NULL,
	detail    TEXT NOT NULL,
	PRIMARY KEY (pipeline, test)
);
CREATE INDEX IF NOT EXISTS tests_flaky ON tests (flaky, flip_rate);
CREATE TABLE IF NOT EXISTS quarantine (
	pipeline TEXT NOT NULL,
	test     TEXT NOT NULL,
	since_ms INTEGER NOT NULL,
	PRIMARY KEY (pipeline, test)
);
-- The run whose task first made each artifact (by its id, sha256:HEX):
-- a cached build's page links to the run that built its outputs.
CREATE TABLE IF NOT EXISTS artifact_runs (
	id     TEXT PRIMARY KEY,
	run_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS output (
	run_id INTEGER NOT NULL REFERENCES runs (id),
	task   TEXT NOT NULL,
	seq    INTEGER NOT NULL,
	stream TEXT NOT NULL,
	text   TEXT NOT NULL,
	PRIMARY KEY (run_id, task, seq)
);
`

// interruptedError is the error of a run the boss stopped, or left
// unfinished when it was killed.
const interruptedError = "the boss stopped while this run was queued or running: run it again"

// openStore opens (or creates) the history under dataDir. Runs that were
// queued or running when the boss last stopped are marked interrupted: no
// process of theirs survives a boss. It returns their ids.
func openStore(dataDir string) (*store, []int64, error) {
	path := filepath.Join(dataDir, "history.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite has one writer, and this keeps every change in
	// the order it was made.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := addColumns(db, "runs", "TEXT NOT NULL DEFAULT ''", "commit_sha", "ref", "author", "commit_url"); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := addColumns(db, "tasks", "INTEGER NOT NULL DEFAULT 0", "attempts", "flaky", "quarantined", "built_by", "waited_ms"); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := addColumns(db, "tasks", "TEXT NOT NULL DEFAULT '[]'", "waited_for"); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := fillArtifactRuns(db); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	// A task's test cases counted as it was saved (NULL: none), valid for
	// the runs marked counted: those of a boss that counts, which ended.
	// Other runs have theirs counted from their cases (boss/summary.go).
	if err := addColumns(db, "tasks", "INTEGER", countColumns...); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := addColumns(db, "runs", "INTEGER", "counted"); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	var unfinished []int64
	rows, err := db.Query(`SELECT id FROM runs WHERE status IN (?, ?) ORDER BY id`, bettertest.StatusQueued, bettertest.StatusRunning)
	if err == nil {
		for rows.Next() {
			var id int64
			if err = rows.Scan(&id); err != nil {
				break
			}
			unfinished = append(unfinished, id)
		}
		rows.Close()
	}
	if err == nil {
		// What an unfinished run's tasks counted may lag its stored cases.
		_, err = db.Exec(`UPDATE runs SET status = ?, error = ?, finished_ms = ?, counted = NULL WHERE status IN (?, ?)`,
			bettertest.StatusInterrupted, interruptedError, time.Now().UnixMilli(), bettertest.StatusQueued, bettertest.StatusRunning)
	}
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := db.Exec(`UPDATE stages SET status = ? WHERE status = ?`, bettertest.StatusInterrupted, bettertest.StatusRunning); err != nil {
		db.Close()
		return nil, nil, err
	}
	if _, err := db.Exec(`UPDATE tasks SET status = ? WHERE status = ?`, bettertest.StatusInterrupted, bettertest.StatusRunning); err != nil {
		db.Close()
		return nil, nil, err
	}
	rdb, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(4)
	// A test's results in its newest runs: those from the Nth newest run
	// that has any on. Prepared once: judging reads it for every test of a run.
	history, err := rdb.Prepare(`SELECT run_id, commit_sha, status FROM cases
		WHERE pipeline = ? AND test = ? AND run_id >= coalesce(
			(SELECT run_id FROM (SELECT DISTINCT run_id FROM cases WHERE pipeline = ? AND test = ? ORDER BY run_id DESC LIMIT 1 OFFSET ?)), 0)
		ORDER BY run_id DESC, seq`)
	if err != nil {
		rdb.Close()
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &store{dir: dataDir, db: db, rdb: rdb, history: history}
	s.w = newWriter(db, s.full)
	return s, unfinished, nil
}

// close checkpoints the write-ahead log into history.db, so the boss leaves
// one file that is whole on its own, then closes it.
func (s *store) close() error {
	s.w.close()
	s.history.Close()
	rerr := s.rdb.Close()
	_, cerr := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return errors.Join(rerr, cerr, s.db.Close())
}

// addColumns adds columns of one type that a history made by an earlier boss lacks.
func addColumns(db *sql.DB, table, typ string, columns ...string) error {
	rows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		have[name] = true
	}
	rows.Close()
	for _, c := range columns {
		if !have[c] {
			if _, err := db.Exec(`ALTER TABLE ` + table + ` ADD COLUMN ` + c + ` ` + typ); err != nil {
				return err
			}
		}
	}
	return nil
}

// newDelivery records a webhook delivery id and says whether it is new.
func (s *store) newDelivery(id string) (bool, error) {
	var n int64
	err := s.w.do(func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT OR IGNORE INTO deliveries (id, received_ms) VALUES (?, ?)`, id, time.Now().UnixMilli())
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record delivery %s: %w", id, err)
	}
	return n == 1, nil
}

// forgetDelivery removes a delivery that started nothing, so that its
// redelivery is new.
func (s *store) forgetDelivery(id string) error {
	if err := s.w.exec(`DELETE FROM deliveries WHERE id = ?`, id); err != nil {
		return fmt.Errorf("forget delivery %s: %w", id, err)
	}
	return nil
}

// createRun records a new queued run and returns its id.
func (s *store) createRun(r bettertest.Run) (int64, error) {
	var id int64
	err := s.w.do(func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO runs (pipeline, status, trigger, created_ms, commit_sha, ref, author, commit_url, counted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			r.Pipeline, r.Status, r.Trigger, r.CreatedMS, r.Commit, r.Ref, r.Author, r.CommitURL)
		if err == nil {
			id, err = res.LastInsertId()
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record a run of %s: %w", r.Pipeline, err)
	}
	return id, nil
}

// saveRun writes a run's own fields (not its stages).
func (s *store) saveRun(tx *sql.Tx, r bettertest.Run) error {
	_, err := tx.Exec(`UPDATE runs SET status = ?, worker = ?, started_ms = ?, finished_ms = ?, exit_code = ?, error = ?,
		commit_sha = ?, ref = ?, author = ?, commit_url = ? WHERE id = ?`,
		r.Status, r.Worker, r.StartedMS, r.FinishedMS, r.ExitCode, r.Error, r.Commit, r.Ref, r.Author, r.CommitURL, r.ID)
	if err != nil {
		return fmt.Errorf("record run %d: %w", r.ID, err)
	}
	return nil
}

func (s *store) saveStage(tx *sql.Tx, runID int64, idx int, st bettertest.Stage) error {
	_, err := tx.Exec(`INSERT INTO stages (run_id, idx, name, status, started_ms, finished_ms) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, idx) DO UPDATE SET status = excluded.status, finished_ms = excluded.finished_ms`,
		runID, idx, st.Name, st.Status, st.StartedMS, st.FinishedMS)
	if err != nil {
		return fmt.Errorf("record stage %s of run %d: %w", st.Name, runID, err)
	}
	return nil
}

func (s *store) saveTask(tx *sql.Tx, runID int64, idx int, t bettertest.Task) error {
	artifacts, err := json.Marshal(t.Artifacts)
	if err != nil {
		return err
	}
	waitedFor, err := json.Marshal(t.WaitedFor)
	if err != nil {
		return err
	}
	var counts [4]*int
	if c := t.Tests; c != nil {
		counts = [4]*int{&c.Passed, &c.Failed, &c.Skipped, &c.Flaky}
	}
	_, err = tx.Exec(`INSERT INTO tasks (run_id, idx, stage, name, kind, status, exit_code, cached, reason, error, started_ms, finished_ms, artifacts,
			attempts, flaky, quarantined, built_by, tests_passed, tests_failed, tests_skipped, tests_flaky, waited_ms, waited_for)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, idx) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code, cached = excluded.cached,
			reason = excluded.reason, error = excluded.error, finished_ms = excluded.finished_ms, artifacts = excluded.artifacts,
			attempts = excluded.attempts, flaky = excluded.flaky, quarantined = excluded.quarantined, built_by = excluded.built_by,
			tests_passed = excluded.tests_passed, tests_failed = excluded.tests_failed, tests_skipped = excluded.tests_skipped, tests_flaky = excluded.tests_flaky,
			waited_ms = excluded.waited_ms, waited_for = excluded.waited_for`,
		runID, idx, t.Stage, t.Name, t.Kind, t.Status, t.ExitCode, t.Cached, t.Reason, t.Error, t.StartedMS, t.FinishedMS, string(artifacts),
		t.Attempts, t.Flaky, t.Quarantined, t.BuiltBy, counts[0], counts[1], counts[2], counts[3], t.WaitedMS, string(waitedFor))
	if err != nil {
		return fmt.Errorf("record task %s of run %d: %w", t.Name, runID, err)
	}
	if t.Cached {
		return nil // its artifacts were made by an earlier run
	}
	for _, a := range t.Artifacts {
		if _, err := tx.Exec(`INSERT OR IGNORE INTO artifact_runs (id, run_id) VALUES (?, ?)`, a.ID, runID); err != nil {
			return fmt.Errorf("record the artifacts of task %s of run %d: %w", t.Name, runID, err)
		}
	}
	return nil
}

// fillArtifactRuns fills artifact_runs, once, from the tasks of a history
// that an earlier boss, which kept no such table, left.
func fillArtifactRuns(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var done int
	if err := tx.QueryRow(`SELECT count(*) FROM meta WHERE key = 'artifact_runs'`).Scan(&done); err != nil || done > 0 {
		return err
	}
	if _, err := tx.Exec(`INSERT OR IGNORE INTO artifact_runs (id, run_id)
		SELECT json_extract(a.value, '$.id'), t.run_id FROM tasks t, json_each(t.artifacts) a
		WHERE t.cached = 0 AND json_extract(a.value, '$.id') IS NOT NULL ORDER BY t.run_id, t.idx`); err != nil {
		return fmt.Errorf("list the runs that made the artifacts: %w", err)
	}
	if _, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('artifact_runs', 'filled')`); err != nil {
		return err
	}
	return tx.Commit()
}

// builtBy is the run that first made the artifact id, 0 when none did.
func (s *store) builtBy(ctx context.Context, id string) (int64, error) {
	var run int64
	err := s.rdb.QueryRowContext(ctx, `SELECT run_id FROM artifact_runs WHERE id = ?`, id).Scan(&run)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find the run that made artifact %s: %w", id, err)
	}
	return run, nil
}

// saveWhole writes a run with its stages and tasks.
func (s *store) saveWhole(tx *sql.Tx, r bettertest.Run) error {
	if err := s.saveRun(tx, r); err != nil {
		return err
	}
	idx := 0
	for si, st := range r.Stages {
		if err := s.saveStage(tx, r.ID, si, st); err != nil {
			return err
		}
		for _, t := range st.Tasks {
			if err := s.saveTask(tx, r.ID, idx, t); err != nil {
				return err
			}
			idx++
		}
	}
	return nil
}

// appendRun stores, in one transaction, new chunks of output of several
// tasks of a run (from holds the number of chunks of each task stored
// before) and its new test results (resultsFrom results were stored before).
func (s *store) appendRun(runID int64, pipeline, commit string, from map[string]int, chunks map[string][]bettertest.Chunk,
	resultsFrom int, results []bettertest.TestResult) error {
	return s.w.do(func(tx *sql.Tx) error {
		return s.appendRunTx(tx, runID, pipeline, commit, from, chunks, resultsFrom, results)
	})
}

func (s *store) appendRunTx(tx *sql.Tx, runID int64, pipeline, commit string, from map[string]int, chunks map[string][]bettertest.Chunk,
	resultsFrom int, results []bettertest.TestResult) error {
	for task, cs := range chunks {
		for i, c := range cs {
			if _, err := tx.Exec(`INSERT INTO output (run_id, task, seq, stream, text) VALUES (?, ?, ?, ?, ?)`,
				runID, task, from[task]+i, c.Stream, c.Text); err != nil {
				return fmt.Errorf("record output of run %d: %w", runID, err)
			}
		}
	}
	for i, t := range results {
		if _, err := tx.Exec(`INSERT INTO cases (run_id, seq, pipeline, test, task, name, attempt, status, duration_ms, output, commit_sha)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			runID, resultsFrom+i, pipeline, t.Test, t.Task, t.Case, t.Attempt, t.Status, t.DurationMS, t.Output, commit); err != nil {
			return fmt.Errorf("record test %s of run %d: %w", t.Test, runID, err)
		}
	}
	return nil
}

var errNoRun = errors.New("no such run")

// diskFull is a change the history could not take for want of space,
// answered 507 and saying where; cause is SQLite's error, if any.
func (s *store) diskFull(cause error) error {
	return &httpapi.Error{Kind: httpapi.InsufficientStorage, Message: "disk full at " + s.dir + ": free space there, then try again", Err: cause}
}

// isDiskFull says whether err is (or wraps) diskFull's error.
func isDiskFull(err error) (*httpapi.Error, bool) {
	e, ok := errors.AsType[*httpapi.Error](err)
	return e, ok && e.Kind == httpapi.InsufficientStorage
}

// minFree is the room a new run needs in the data dir: with less, the disk
// counts as full and no run starts, rather than start and fail for want of it.
const minFree = 16 << 20

// room says whether the data dir has room for a new run.
func (s *store) room() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return fmt.Errorf("--data-dir %s: %w", s.dir, err)
	}
	if st.Bavail*uint64(st.Bsize) < minFree {
		return s.diskFull(nil)
	}
	return nil
}

// full says which of SQLite's errors is a full disk ("database or disk is full").
func (s *store) full(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return s.diskFull(err)
	}
	return err
}

const runColumns = `id, pipeline, status, trigger, worker, created_ms, started_ms, finished_ms, exit_code, error, commit_sha, ref, author, commit_url`

func scanRun(row interface{ Scan(...any) error }) (bettertest.Run, error) {
	var r bettertest.Run
	var code sql.NullInt64
	err := row.Scan(&r.ID, &r.Pipeline, &r.Status, &r.Trigger, &r.Worker, &r.CreatedMS, &r.StartedMS, &r.FinishedMS, &code, &r.Error,
		&r.Commit, &r.Ref, &r.Author, &r.CommitURL)
	if code.Valid {
		c := int(code.Int64)
		r.ExitCode = &c
	}
	return r, err
}

// run reads one run with its stages and tasks.
func (s *store) run(ctx context.Context, id int64) (bettertest.Run, error) {
	r, err := scanRun(s.rdb.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNoRun
	}
	if err != nil {
		return r, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, status, started_ms, finished_ms FROM stages WHERE run_id = ? ORDER BY idx`, id)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		st := bettertest.Stage{Tasks: []bettertest.Task{}}
		if err := rows.Scan(&st.Name, &st.Status, &st.StartedMS, &st.FinishedMS); err != nil {
			return r, err
		}
		r.Stages = append(r.Stages, st)
	}
	if err := rows.Err(); err != nil {
		return r, err
	}
	trows, err := s.rdb.QueryContext(ctx, `SELECT stage, name, kind, status, exit_code, cached, reason, error, started_ms, finished_ms, artifacts,
		attempts, flaky, quarantined, built_by, waited_ms, waited_for FROM tasks WHERE run_id = ? ORDER BY idx`, id)
	if err != nil {
		return r, err
	}
	defer trows.Close()
	for trows.Next() {
		var t bettertest.Task
		var code sql.NullInt64
		var artifacts, waitedFor string
		if err := trows.Scan(&t.Stage, &t.Name, &t.Kind, &t.Status, &code, &t.Cached, &t.Reason, &t.Error, &t.StartedMS, &t.FinishedMS, &artifacts,
			&t.Attempts, &t.Flaky, &t.Quarantined, &t.BuiltBy, &t.WaitedMS, &waitedFor); err != nil {
			return r, err
		}
		if err := json.Unmarshal([]byte(waitedFor), &t.WaitedFor); err != nil {
			return r, fmt.Errorf("run %d task %s: waited_for: %w", id, t.Name, err)
		}
		if code.Valid {
			c := int(code.Int64)
			t.ExitCode = &c
		}
		if err := json.Unmarshal([]byte(artifacts), &t.Artifacts); err != nil {
			return r, fmt.Errorf("run %d task %s: artifacts: %w", id, t.Name, err)
		}
		for i := range r.Stages {
			if r.Stages[i].Name == t.Stage {
				r.Stages[i].Tasks = append(r.Stages[i].Tasks, t)
			}
		}
	}
	return r, trows.Err()
}

// runs lists the newest runs, of one pipeline or of all when pipeline is "".
func (s *store) runs(ctx context.Context, pipeline string, limit int) ([]bettertest.Run, error) {
	q := `SELECT ` + runColumns + ` FROM runs`
	args := []any{}
	if pipeline != "" {
		q += ` WHERE pipeline = ?`
		args = append(args, pipeline)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []bettertest.Run{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// output is a task's output, in order, before chunk number before
// (math.MaxInt: all of it), read as it is used: it need not fit in memory.
func (s *store) output(ctx context.Context, runID int64, task string, before int) iter.Seq2[bettertest.Chunk, error] {
	return func(yield func(bettertest.Chunk, error) bool) {
		rows, err := s.rdb.QueryContext(ctx, `SELECT stream, text FROM output WHERE run_id = ? AND task = ? AND seq < ? ORDER BY seq`, runID, task, before)
		if err != nil {
			yield(bettertest.Chunk{}, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var c bettertest.Chunk
			if err := rows.Scan(&c.Stream, &c.Text); err != nil {
				yield(c, err)
				return
			}
			if !yield(c, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(bettertest.Chunk{}, err)
		}
	}
}

// cases reads the test results of a run, of one task or of all when task is "".
func (s *store) cases(ctx context.Context, runID int64, task string) ([]bettertest.TestResult, error) {
	q := `WHERE run_id = ?`
	args := []any{runID}
	if task != "" {
		q += ` AND task = ?`
		args = append(args, task)
	}
	return s.queryCases(ctx, q, args...)
}

// queryCases reads the test results that where (a WHERE clause) picks, in
// the order they came.
func (s *store) queryCases(ctx context.Context, where string, args ...any) ([]bettertest.TestResult, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT task, name, test, attempt, status, duration_ms, output FROM cases `+where+` ORDER BY seq`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []bettertest.TestResult{}
	for rows.Next() {
		var t bettertest.TestResult
		if err := rows.Scan(&t.Task, &t.Case, &t.Test, &t.Attempt, &t.Status, &t.DurationMS, &t.Output); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// testHistory reads the results of one test in its newest runs, newest run
// first and, within a run, in the order they were reported.
func (s *store) testHistory(ctx context.Context, pipeline, test string, runs int) ([]caseRow, error) {
	rows, err := s.history.QueryContext(ctx, pipeline, test, pipeline, test, runs-1)
	if err != nil {
		return nil, fmt.Errorf("read the history of %s/%s: %w", pipeline, test, err)
	}
	defer rows.Close()
	var out []caseRow
	for rows.Next() {
		var c caseRow
		if err := rows.Scan(&c.RunID, &c.Commit, &c.Status); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// allTests lists every test with results, by pipeline and name.
func (s *store) allTests(ctx context.Context) ([][2]string, error) {
	return s.pipelineTests(ctx, `SELECT DISTINCT pipeline, test FROM cases ORDER BY pipeline, test`)
}

// pipelineTests runs a query of (pipeline, test) rows.
func (s *store) pipelineTests(ctx context.Context, query string) ([][2]string, error) {
	rows, err := s.rdb.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var p, t string
		if err := rows.Scan(&p, &t); err != nil {
			return nil, err
		}
		out = append(out, [2]string{p, t})
	}
	return out, rows.Err()
}

// saveTests records what the rules found about tests, in one transaction.
func (s *store) saveTests(verdicts []bettertest.FlakyTest) error {
	return s.w.do(func(tx *sql.Tx) error {
		for _, ft := range verdicts {
			detail, err := json.Marshal(ft)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT INTO tests (pipeline, test, flaky, flip_rate, detail) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (pipeline, test) DO UPDATE SET flaky = excluded.flaky, flip_rate = excluded.flip_rate, detail = excluded.detail`,
				ft.Pipeline, ft.Test, ft.Flaky, ft.FlipRate, string(detail)); err != nil {
				return fmt.Errorf("record the flakiness of %s/%s: %w", ft.Pipeline, ft.Test, err)
			}
		}
		return nil
	})
}

// flakyTests reads the tests the rules found flaky, of one pipeline or of
// all when pipeline is "", highest flip rate first; plus the tests named in
// also, flaky or not (a test with no results yet has only its names).
func (s *store) flakyTests(ctx context.Context, pipeline string, also [][2]string) ([]bettertest.FlakyTest, error) {
	q, args := `SELECT detail FROM tests WHERE flaky = 1`, []any{}
	if pipeline != "" {
		q += ` AND pipeline = ?`
		args = append(args, pipeline)
	}
	rows, err := s.rdb.QueryContext(ctx, q+` ORDER BY flip_rate DESC, pipeline, test`, args...)
	if err != nil {
		return nil, fmt.Errorf("read the flaky tests: %w", err)
	}
	defer rows.Close()
	out := []bettertest.FlakyTest{}
	seen := map[[2]string]bool{}
	for rows.Next() {
		var detail string
		if err := rows.Scan(&detail); err != nil {
			return nil, err
		}
		var ft bettertest.FlakyTest
		if err := json.Unmarshal([]byte(detail), &ft); err != nil {
			return nil, fmt.Errorf("read the flaky tests: %w", err)
		}
		seen[[2]string{ft.Pipeline, ft.Test}] = true
		out = append(out, ft)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, pt := range also {
		if seen[pt] {
			continue
		}
		ft := bettertest.FlakyTest{Pipeline: pt[0], Test: pt[1], Reasons: []string{}, Evidence: []bettertest.TestRun{}, History: []bettertest.TestRun{}}
		var detail string
		err := s.rdb.QueryRowContext(ctx, `SELECT detail FROM tests WHERE pipeline = ? AND test = ?`, pt[0], pt[1]).Scan(&detail)
		switch {
		case err == nil:
			if err := json.Unmarshal([]byte(detail), &ft); err != nil {
				return nil, fmt.Errorf("read test %s/%s: %w", pt[0], pt[1], err)
			}
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("read test %s/%s: %w", pt[0], pt[1], err)
		}
		out = append(out, ft)
	}
	return out, nil
}

// quarantined lists the tests quarantined from the UI or API.
func (s *store) quarantined(ctx context.Context) ([][2]string, error) {
	out, err := s.pipelineTests(ctx, `SELECT pipeline, test FROM quarantine ORDER BY pipeline, test`)
	if err != nil {
		return nil, fmt.Errorf("read the quarantine: %w", err)
	}
	return out, nil
}

// setQuarantine quarantines a test, or releases it.
func (s *store) setQuarantine(pipeline, test string, on bool) error {
	var err error
	if on {
		err = s.w.exec(`INSERT OR IGNORE INTO quarantine (pipeline, test, since_ms) VALUES (?, ?, ?)`, pipeline, test, time.Now().UnixMilli())
	} else {
		err = s.w.exec(`DELETE FROM quarantine WHERE pipeline = ? AND test = ?`, pipeline, test)
	}
	if err != nil {
		return fmt.Errorf("quarantine %s/%s: %w", pipeline, test, err)
	}
	return nil
}

// meta reads a value the boss keeps about its history ("" when unset).
func (s *store) meta(key string) (string, error) {
	var v string
	err := s.rdb.QueryRow(`SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (s *store) setMeta(key, value string) error {
	return s.w.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
}
