package boss

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/hub"
	"github.com/bettertest/bettertest/internal/mask"
)

// activeRun is a run that is queued or running. Its state is in memory
// until it ends; its output goes to the history as it comes, and memory
// holds only what is not written yet: late viewers read the rest from the
// history (see outputSnapshot). The engine owns it: only its commands
// touch it, except for what is fixed once it is made (its id, pipeline,
// kick and ended) and what its launch sets before the engine sees it.
type activeRun struct {
	run   bettertest.Run      // with its stages and tasks
	logs  map[string]*taskLog // by task; "" is the pipedef's own output
	kick  chan struct{}       // there is output to store
	ended chan struct{}       // closed once the pipedef exited: store the rest
	// unstored is the size of the output in logs not written yet; readers of
	// the pipedef wait on room while it is over maxUnstored.
	unstored int
	waiting  []chan struct{} // readers waiting for room: closed when output is written, or can no longer be
	// lost is why the run's output could not be written: it is no longer kept.
	lost error
	// unsaved: a change of its state could not be written. Once it ends it
	// stays in Boss.ended, so it reads as it ended, until it is written whole.
	unsaved   bool
	finishing bool // finish has begun: its end is being recorded
	worker    *worker
	cmd       *exec.Cmd
	// Why the run was stopped, if it was: the status and error it ends with.
	stopStatus, stopError string
	killTimer             *time.Timer

	launching bool         // being checked out or started: no process yet
	commit    *commitInfo  // the commit tested, for a pipeline from a repository
	checkout  string       // its worktree, removed when the run ends
	sandbox   string       // its sandbox's directory (the worker's socket), removed when the run ends
	proxy     *workerProxy // its way to its worker, closed when the run ends
	statuses  chan status  // commit statuses to post, in order; nil without GitHub

	results       []bettertest.TestResult // its test results, in the order they came
	storedResults int                     // how many of them are in the store
	attempts      map[attemptKey]*attempt // the attempts of test tasks not over yet
	tested        []string                // the ids of the tests with results, in the order they came
	seen          map[string]bool         // the ids in tested

	secretsDir string                     // its pipedef's --secrets-dir, removed when it ends
	mask       *mask.Masker               // the values of the pipeline's secrets
	masks      map[[2]string]*mask.Stream // by task and stream: output held back while it may be a secret
}

// taskLog is where a task's output stands.
type taskLog struct {
	n       int                // chunks so far: the next one's seq
	pending []bettertest.Chunk // the last len(pending) of them, not in the history yet
}

// maxUnstored bounds a run's output held in memory: past it, the boss reads
// no more from the pipedef until the history has taken what it holds, so a
// run writing faster than the disk is slowed down instead of growing the boss.
const maxUnstored = 8 << 20

type attemptKey struct {
	task    string
	attempt int
}

// attempt is what an attempt of a test task reported so far.
type attempt struct {
	results []bettertest.TestResult
	failed  int // how many of them failed
}

func (r *activeRun) task(name string) (*bettertest.Task, int) {
	idx := 0
	for si := range r.run.Stages {
		for ti := range r.run.Stages[si].Tasks {
			if r.run.Stages[si].Tasks[ti].Name == name {
				return &r.run.Stages[si].Tasks[ti], idx
			}
			idx++
		}
	}
	return nil, -1
}

func (r *activeRun) stage(name string) (*bettertest.Stage, int) {
	for i := range r.run.Stages {
		if r.run.Stages[i].Name == name {
			return &r.run.Stages[i], i
		}
	}
	return nil, -1
}

func now() int64 { return time.Now().UnixMilli() }

// trigger queues a run of a pipeline and starts it at once if a worker is free.
func (b *Boss) trigger(pipeline, trigger string) (bettertest.Run, error) {
	return b.triggerCommit(pipeline, trigger, nil)
}

// triggerCommit queues a run of a commit: ci names it, or, when nil, a
// pipeline from a repository runs its default branch's head.
func (b *Boss) triggerCommit(pipeline, trigger string, ci *commitInfo) (bettertest.Run, error) {
	if _, ok := b.pipeline(pipeline); !ok {
		return bettertest.Run{}, errNoPipeline
	}
	if rp := b.repos[pipeline]; rp != nil && ci == nil {
		ci = &commitInfo{FullName: rp.cfg.fullName()}
	}
	if err := b.store.room(); err != nil {
		return bettertest.Run{}, err
	}
	if err := b.saveUnsaved(); err != nil {
		return bettertest.Run{}, err
	}
	r := &activeRun{
		commit:   ci,
		run:      bettertest.Run{Pipeline: pipeline, Status: bettertest.StatusQueued, Trigger: trigger, CreatedMS: now(), Stages: []bettertest.Stage{}},
		logs:     map[string]*taskLog{},
		attempts: map[attemptKey]*attempt{},
		seen:     map[string]bool{},
		kick:     make(chan struct{}, 1),
		ended:    make(chan struct{}),
		mask:     b.masker(pipeline),
		masks:    map[[2]string]*mask.Stream{},
	}
	if ci != nil {
		r.run.Commit, r.run.Ref, r.run.Author, r.run.CommitURL = ci.Commit, ci.Ref, ci.Author, ci.URL
	}
	awaiting := ci != nil && ci.Fork && !ci.Trusted
	if awaiting {
		r.run.Status = bettertest.StatusAwaitingApproval
	}
	// Written before the engine has it, so before anyone sees it: a run listed is a
	// run in the history.
	id, err := b.store.createRun(r.run)
	if err != nil {
		return bettertest.Run{}, err
	}
	r.run.ID = id
	var run bettertest.Run
	b.do(func(e *engine) {
		e.active[id] = r
		e.publishRun(r)
		if awaiting {
			e.note("run awaits approval: a pull request from a fork", "run", id, "pipeline", pipeline, "author", ci.Author)
			e.postStatus(r)
		} else {
			e.queue = append(e.queue, r)
			e.note("run queued", "run", id, "pipeline", pipeline, "trigger", trigger)
			e.dispatch()
		}
		run = summary(r.run)
	})
	return run, nil
}

// approve queues a run that awaited approval.
func (b *Boss) approve(id int64, by string) (run bettertest.Run, err error) {
	b.do(func(e *engine) {
		r, ok := e.active[id]
		if !ok || r.run.Status != bettertest.StatusAwaitingApproval {
			err = errNotAwaiting
			return
		}
		r.run.Status = bettertest.StatusQueued
		e.queue = append(e.queue, r)
		e.saveRun(r)
		e.note("run approved", "run", id, "pipeline", r.run.Pipeline, "by", by)
		e.dispatch()
		run = summary(r.run)
	})
	return run, err
}

var errNotAwaiting = errors.New("run is not awaiting approval")

var errNoPipeline = errors.New("no such pipeline")

// summary is a run without its stages, as run events and lists carry it.
func summary(r bettertest.Run) bettertest.Run {
	r.Tests = bettertest.TotalCounts(r.Stages)
	r.Stages = nil
	return r
}

func (e *engine) publishRun(r *activeRun) {
	e.changed()
	e.emit(withRun(hub.New(bettertest.BossEventRun, summary(r.run)), r.run.ID, ""))
}

func (e *engine) publishStage(r *activeRun, st bettertest.Stage) {
	e.changed()
	st.Tasks = nil
	e.emit(withRun(hub.New(bettertest.BossEventStage, bettertest.StageEvent{RunID: r.run.ID, Stage: st}), r.run.ID, ""))
}

func (e *engine) publishTask(r *activeRun, t bettertest.Task) {
	e.changed()
	e.emit(withRun(hub.New(bettertest.BossEventTask, bettertest.TaskEvent{RunID: r.run.ID, Task: t}), r.run.ID, t.Name))
}

func withRun(ev hub.Event, run int64, task string) hub.Event {
	ev.Run, ev.Task = run, task
	return ev
}

// saveRun records and announces a change of the run's own fields.
func (e *engine) saveRun(r *activeRun) {
	run := r.run
	e.record(r, func(tx *sql.Tx) error { return e.store.saveRun(tx, run) })
	e.publishRun(r)
}

// record queues a change of a run for the history's writer; it is
// written soon after, in order, without the boss waiting for it.
func (e *engine) record(r *activeRun, apply func(*sql.Tx) error) {
	e.store.w.add(change{apply: apply, then: func(err error) {
		if err != nil {
			e.post(func(e *engine) { e.recorded(r, err) })
		}
	}})
}

// recorded deals with a change of a run's state that the history
// could not take: the run ends, failed with the reason (a full disk says
// where), rather than go on unrecorded or read as running for ever.
func (e *engine) recorded(r *activeRun, err error) {
	if err == nil {
		return
	}
	e.log.Error("history", "run", r.run.ID, "err", err)
	if r.unsaved {
		return // its first failure said why
	}
	r.unsaved = true
	if r.finishing { // its end is what could not be written: its end says so
		r.run.Status, r.run.Error = bettertest.StatusFailed, recordFailure(err)
		e.publishRun(r)
		return
	}
	e.stop(r, bettertest.StatusFailed, recordFailure(err))
}

// recordFailure is what a run says when its history could not be written.
func recordFailure(err error) string {
	if full, ok := isDiskFull(err); ok {
		return full.Message
	}
	return fmt.Sprintf("the boss could not record this run (%v): it was stopped; see the boss's log", err)
}

// saveUnsaved writes again, whole, the runs that ended with a change the
// history could not take. A new run is recorded only after them.
func (b *Boss) saveUnsaved() error {
	var runs []bettertest.Run
	b.do(func(e *engine) {
		for _, id := range slices.Sorted(maps.Keys(e.ended)) {
			if r := e.ended[id]; r.unsaved {
				run := r.run
				run.Stages = cloneStages(r.run.Stages)
				runs = append(runs, run)
			}
		}
	})
	if len(runs) == 0 {
		return nil
	}
	err := b.store.w.do(func(tx *sql.Tx) error {
		for _, run := range runs {
			if err := b.store.saveWhole(tx, run); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.do(func(e *engine) {
		for _, run := range runs {
			delete(e.ended, run.ID)
			e.note("recorded a run's end that could not be written before", "run", run.ID)
		}
		e.changed()
	})
	return nil
}

// dispatch starts queued runs, oldest first, while a worker is free.
func (e *engine) dispatch() {
	for len(e.queue) > 0 {
		w := e.pick()
		if w == nil {
			return
		}
		r := e.queue[0]
		e.queue = e.queue[1:]
		e.start(r, w)
	}
}

// pick returns the least loaded worker that is up and has a free
// slot, or nil. Its load is the larger of the pipeline runs the boss gave it
// and the runs it says execute, over its capacity.
func (e *engine) pick() *worker {
	var best *worker
	for _, w := range e.workers {
		if !w.info.Up || w.leaving || w.info.Assigned >= w.info.Capacity || w.info.Running >= w.info.Capacity {
			continue
		}
		if best == nil || w.load() < best.load() {
			best = w
		}
	}
	return best
}

func (e *engine) start(r *activeRun, w *worker) {
	r.worker = w
	w.info.Assigned++
	e.publishWorker(w)
	r.run.Status, r.run.Worker, r.run.StartedMS = bettertest.StatusRunning, w.cfg.Name, now()
	r.launching = true
	e.saveRun(r)
	e.runsWG.Add(1)
	go e.launch(r, w)
}

// launch checks out the run's commit when its pipeline lives in a
// repository, then starts the pipedef and follows it to its end.
func (b *Boss) launch(r *activeRun, w *worker) {
	defer b.runsWG.Done()
	// A changed worker record updates w.cfg in place (boss/workersdir.go).
	var cfg WorkerConfig
	b.do(func(*engine) { cfg = w.cfg })
	p, _ := b.pipeline(r.run.Pipeline)
	script, dir := filepath.Base(p.Path), filepath.Dir(p.Path)
	// The worker is a socket that the boss serves for this run alone.
	args := []string{"--worker", "unix:" + sandboxSocket, "--worker-name", cfg.Name, "--run-id", strconv.FormatInt(r.run.ID, 10), "--report", "jsonl"}
	quarantine, err := b.quarantineArgs(b.stopping, p.Name)
	if err != nil {
		b.failLaunch(r, fmt.Sprintf("could not read the quarantined tests: %v", err))
		return
	}
	args = append(args, quarantine...)
	if rp := b.repos[p.Name]; rp != nil {
		co, err := rp.prepare(b.stopping, r.run.ID, r.commit.Commit, r.commit.Ref)
		b.do(func(*engine) { r.checkout = co.Dir })
		if err != nil {
			b.failLaunch(r, fmt.Sprintf("could not check out the pipedef's commit: %v", err))
			return
		}
		b.do(func(e *engine) {
			r.commit.Commit, r.commit.Ref = co.Commit, co.Ref
			if r.commit.Author == "" {
				r.commit.Author = co.Author
			}
			if r.commit.URL == "" && strings.Contains(rp.cfg.URL, "github.com") {
				r.commit.URL = "https://github.com/" + rp.cfg.fullName() + "/commit/" + co.Commit
			}
			r.run.Commit, r.run.Ref, r.run.Author, r.run.CommitURL = r.commit.Commit, r.commit.Ref, r.commit.Author, r.commit.URL
			e.saveRun(r)
		})
		script, dir = filepath.FromSlash(rp.cfg.Pipedef), co.Dir
		args = append(args, "--commit", co.Commit, "--ref", co.Ref)
		if err := chownTree(co.Dir); err != nil {
			b.failLaunch(r, fmt.Sprintf("could not give the checkout to the sandbox's user: %v", err))
			return
		}
	}
	sandboxDir, proxy, err := b.prepareSandbox(r.run.ID, cfg)
	if err != nil {
		b.failLaunch(r, fmt.Sprintf("could not prepare the pipedef's sandbox: %v", err))
		return
	}
	b.do(func(*engine) { r.sandbox, r.proxy = sandboxDir, proxy })
	secrets, err := b.runSecretsDir(r, sandboxDir)
	if err == nil && secrets != "" {
		err = chownTree(secrets) // for the sandbox's user alone: 0700 and 0400
		args = append(args, "--secrets-dir", path.Join(sandboxRun, filepath.Base(secrets)))
	}
	if err != nil {
		b.failLaunch(r, fmt.Sprintf("could not give the pipedef its secrets: %v", err))
		return
	}
	cmd := b.sandbox.command(sandboxSpec{Dir: dir, Lib: b.libDir, Run: sandboxDir, Script: script, Args: args})
	stdout, err := cmd.StdoutPipe()
	var stderr io.ReadCloser
	if err == nil {
		stderr, err = cmd.StderrPipe()
	}
	started := false
	b.do(func(e *engine) {
		r.launching = false
		if r.stopStatus != "" { // cancelled, or the boss is stopping, while it was checked out
			e.finish(r, -1)
			return
		}
		if err == nil {
			err = cmd.Start() // here: a stop sees either no process or this one
		}
		if err != nil {
			r.run.Error = fmt.Sprintf("could not start the sandbox for %s: %v", script, err)
			e.finish(r, -1)
			return
		}
		r.cmd, started = cmd, true
		e.postStatus(r)
		e.note("run started", "run", r.run.ID, "pipeline", r.run.Pipeline, "worker", cfg.Name, "pid", cmd.Process.Pid, "commit", r.run.Commit)
	})
	if started {
		b.follow(r, stdout, stderr)
	}
}

// failLaunch ends a run that could not start, saying why.
func (b *Boss) failLaunch(r *activeRun, why string) {
	b.do(func(e *engine) {
		r.launching = false
		r.run.Error = why
		e.finish(r, -1)
	})
}

// prepareSandbox makes the run's sandbox directory, DATADIR/sandbox/ID,
// which only the sandbox's user can enter, and serves its worker's socket in it.
func (b *Boss) prepareSandbox(id int64, w WorkerConfig) (string, *workerProxy, error) {
	dir := filepath.Join(b.cfg.DataDir, "sandbox", strconv.FormatInt(id, 10))
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, err
	}
	if err := os.Lchown(dir, SandboxUID, SandboxUID); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	proxy, err := startWorkerProxy(dir, w)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, proxy, nil
}

// postStatus posts where the run stands to GitHub, when the boss has a
// token and the run a commit: awaiting approval, running, its end. Every run
// that names a commit posts its end, even one that never started (its
// checkout failed, or the boss stopped first): a required check must resolve.
func (e *engine) postStatus(r *activeRun) {
	if e.github == nil || r.commit == nil || r.commit.Commit == "" || r.commit.FullName == "" {
		return
	}
	if r.statuses == nil {
		// Room for every status a run posts (awaiting, running, its end),
		// so a send never waits on the engine.
		r.statuses = make(chan status, 3)
		e.postStatuses(r.statuses)
	}
	r.statuses <- e.github.statusOf(r.run, r.commit)
}

// follow reads a pipedef's report and output until it exits.
func (b *Boss) follow(r *activeRun, stdout, stderr io.Reader) {
	persisted := make(chan struct{})
	go b.persist(r, persisted)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.readOutput(r, "", "stderr", stderr)
	}()
	b.readReport(r, stdout)
	<-done
	err := r.cmd.Wait()
	code := r.cmd.ProcessState.ExitCode()
	if err != nil && code == -1 {
		code = -1 // killed by a signal
	}
	b.do(func(e *engine) { e.flushMasks(r, "", true) })
	close(r.ended) // the last output is persisted before the run's end is
	<-persisted
	b.do(func(e *engine) { e.finish(r, code) })
}

// readReport applies the pipedef's report line by line. Output lines of one
// task and stream that are already waiting in the pipe become one chunk:
// under a flood there are fewer, larger events, and a trickle still goes out
// line by line the moment it comes. A line longer than maxReportLine is no
// report line: it is the pipedef's own output, kept in pieces as it comes,
// so it never has to fit in memory.
func (b *Boss) readReport(r *activeRun, stdout io.Reader) {
	lines := bufio.NewReaderSize(stdout, 256<<10)
	var pending *report
	flush := func() {
		if pending == nil {
			return
		}
		b.readOutputChunk(r, pending.Task, bettertest.Chunk{Stream: pending.Stream, Text: pending.Text})
		pending = nil
	}
	raw := func(text []byte) {
		for len(text) > 0 {
			piece := text[:cutAt(text, 256<<10)]
			text = text[len(piece):]
			b.readOutputChunk(r, "", bettertest.Chunk{Stream: "stdout", Text: strings.ToValidUTF8(string(piece), "\uFFFD")})
		}
	}
	cached := map[string]bool{} // builds answered from the cache whose maker is not looked up yet
	var long []byte             // the start of a line longer than the reader's buffer
	overlong := false           // the rest of a line over maxReportLine is coming
	for {
		frag, err := lines.ReadSlice('\n')
		whole := err == nil || err == io.EOF // frag ends the line
		switch {
		case overlong:
			raw(frag)
			overlong = !whole
		case !whole && len(long)+len(frag) > maxReportLine:
			flush()
			raw(long)
			raw(frag)
			long, overlong = nil, true
		case !whole:
			long = append(long, frag...)
		case len(frag) > 0 || len(long) > 0:
			line := frag
			if long != nil {
				line, long = append(long, frag...), nil
			}
			var ev report
			if json.Unmarshal(line, &ev) != nil || ev.Event == "" {
				flush()
				raw(line)
			} else if ev.Event == "task_output" {
				if pending != nil && (pending.Task != ev.Task || pending.Stream != ev.Stream || len(pending.Text) > 64<<10) {
					flush()
				}
				if pending == nil {
					pending = &ev
				} else {
					pending.Text += ev.Text
				}
			} else {
				flush()
				switch {
				case ev.Event == "task_cached":
					cached[ev.Task] = true
				case ev.Event == "task_artifact" && cached[ev.Task]:
					ev.builtBy = b.builtBy(ev.ID) // its first artifact's maker made them all
					delete(cached, ev.Task)
				}
				b.post(func(e *engine) { e.apply(r, ev) })
			}
		}
		done := err != nil && err != bufio.ErrBufferFull
		if lines.Buffered() == 0 || done {
			flush()
		}
		if done {
			return
		}
	}
}

// cutAt is where to cut text to at most n bytes without splitting a UTF-8
// sequence: all of it when it is shorter.
func cutAt(text []byte, n int) int {
	if len(text) <= n {
		return len(text)
	}
	cut := n
	for cut > n-utf8.UTFMax && cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return cut
}

// maxReportLine is the longest line of a report the boss reads as one: far
// more than any event of the library, and a bound on the memory one takes.
const maxReportLine = 4 << 20

// readOutput keeps a stream of the pipedef that is not its report (stderr)
// as the output of task.
func (b *Boss) readOutput(r *activeRun, task, stream string, rd io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			b.readOutputChunk(r, task, bettertest.Chunk{Stream: stream, Text: strings.ToValidUTF8(string(buf[:n]), "\uFFFD")})
		}
		if err != nil {
			return
		}
	}
}

// output masks the secrets in a chunk of output, then records it.
func (e *engine) output(r *activeRun, task string, c bettertest.Chunk) {
	if c = r.maskOutput(task, c); c.Text != "" {
		e.recordOutput(r, task, c)
	}
}

// recordOutput tells watchers of a chunk of output and keeps it until
// the run's persist goroutine has written it to the history.
func (e *engine) recordOutput(r *activeRun, task string, c bettertest.Chunk) {
	l := r.logs[task]
	if l == nil {
		l = &taskLog{}
		r.logs[task] = l
	}
	seq := l.n
	l.n++
	e.emit(withRun(hub.New(bettertest.BossEventOutput, bettertest.OutputChunkEvent{RunID: r.run.ID, Task: task, Seq: seq, Chunk: c}), r.run.ID, task))
	if r.lost != nil {
		return // the run is ending: its history can take no more
	}
	l.pending = append(l.pending, c)
	r.unstored += len(c.Text)
	r.persistSoon()
}

// readOutputChunk records a chunk a reader of the pipedef read, then holds
// that reader back while the run has too much output unwritten.
// Output of a task the run does not have is dropped.
func (b *Boss) readOutputChunk(r *activeRun, task string, c bettertest.Chunk) {
	room := make(chan struct{})
	b.post(func(e *engine) {
		if t, _ := r.task(task); t != nil || task == "" {
			e.output(r, task, c)
		}
		r.waitForRoom(room)
	})
	select {
	case <-room:
	case <-b.eng.stopped:
	}
}

// waitForRoom closes room at once, or, while the run's unwritten output is
// over maxUnstored, once the history has taken enough of it: its reader
// waits, the pipe fills, and the pipedef waits for the boss's disk instead
// of the boss's memory growing.
func (r *activeRun) waitForRoom(room chan struct{}) {
	r.waiting = append(r.waiting, room)
	r.madeRoom()
}

// madeRoom lets the readers waiting for room go on, if there is room now.
func (r *activeRun) madeRoom() {
	if r.unstored > maxUnstored && r.lost == nil {
		return
	}
	for _, room := range r.waiting {
		close(room)
	}
	r.waiting = nil
}

// outputSnapshot is how a task's output stands for a late viewer: the
// chunks before from are in the history (read them there, outside the
// engine); pending are those after, from memory.
func (r *activeRun) outputSnapshot(task string) (from int, pending []bettertest.Chunk) {
	l := r.logs[task]
	if l == nil {
		return 0, nil
	}
	return l.n - len(l.pending), slices.Clone(l.pending)
}

// persistSoon has the run's persist goroutine write what is new.
func (r *activeRun) persistSoon() {
	select {
	case r.kick <- struct{}{}:
	default: // a write is already due
	}
}

// persist writes a running run's new output and test results to the
// history, all that has come since its last write in one transaction, whenever there is some, and
// once more after the run's last output; then it closes done.
func (b *Boss) persist(r *activeRun, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-r.kick:
		case <-r.ended:
			b.persistOnce(r)
			return
		}
		b.persistOnce(r)
	}
}

func (b *Boss) persistOnce(r *activeRun) {
	batch, from := map[string][]bettertest.Chunk{}, map[string]int{}
	var results []bettertest.TestResult
	var resultsFrom int
	var pipeline, commit string
	b.do(func(*engine) {
		for task, l := range r.logs {
			if len(l.pending) > 0 {
				batch[task] = l.pending[:len(l.pending):len(l.pending)] // elements are never changed, only appended
				from[task] = l.n - len(l.pending)
			}
		}
		results, resultsFrom = r.results[r.storedResults:len(r.results):len(r.results)], r.storedResults
		pipeline, commit = r.run.Pipeline, r.run.Commit
	})
	if len(batch) == 0 && len(results) == 0 {
		return
	}
	err := b.store.appendRun(r.run.ID, pipeline, commit, from, batch, resultsFrom, results)
	b.do(func(e *engine) {
		defer r.madeRoom()
		if err != nil {
			e.lostOutput(r, err)
			return
		}
		for task, chunks := range batch {
			l := r.logs[task]
			l.pending = slices.Clone(l.pending[len(chunks):]) // a new array: the written chunks' memory goes
			for _, c := range chunks {
				r.unstored -= len(c.Text)
			}
		}
		r.storedResults += len(results)
	})
}

// lostOutput ends a run whose output the history could not take:
// what it holds is dropped and it keeps no more, so memory stays bounded,
// and it is stopped with the reason.
func (e *engine) lostOutput(r *activeRun, err error) {
	if r.lost != nil {
		return
	}
	r.lost = err
	for _, l := range r.logs {
		l.pending = nil
	}
	r.unstored = 0
	r.madeRoom()
	e.recorded(r, err)
}

// report is one line of the pipedef's --report jsonl (docs/report-jsonl.md).
type report struct {
	Event    string          `json:"event"`
	Stage    string          `json:"stage"`
	Task     string          `json:"task"`
	Kind     string          `json:"kind"`
	Reason   string          `json:"reason"`
	Stream   string          `json:"stream"`
	Text     string          `json:"text"`
	Path     string          `json:"path"`
	ID       string          `json:"id"`
	Size     int64           `json:"size"`
	Status   string          `json:"status"`
	ExitCode *int            `json:"exit_code"`
	Cached   json.RawMessage `json:"cached"` // a flag in task_end, a count in pipeline_end
	Error    *string         `json:"error"`
	// Tests: test_case, task_attempt, and task_end's new fields.
	Attempt     int             `json:"attempt"`
	Suite       string          `json:"suite"` // test_case: what its id begins with; the task's name when ""
	Name        string          `json:"name"`
	DurationMS  int64           `json:"duration_ms"`
	Output      string          `json:"output"`
	Attempts    int             `json:"attempts"`
	Flaky       bool            `json:"flaky"`
	Quarantined json.RawMessage `json:"quarantined"` // a flag in task_end, a count in pipeline_end
	WaitedMS    int64           `json:"waited_ms"`
	WaitedFor   []string        `json:"waited_for"`

	builtBy int64 // task_artifact: the run that first made it, from the history
}

// maxCaseOutput is how much of a test case's output the history keeps: its end.
const maxCaseOutput = 64 << 10

// test records a test case's result from a test_case event. A
// task_attempt event ends the attempt: the attempt itself is recorded as the
// task's own test case when it reported none, or failed without a failed
// test case to show for it, and the attempt's results are announced in one
// event, however many there are.
func (e *engine) test(r *activeRun, task *bettertest.Task, ev report) {
	if task.Kind != "test" || ev.Attempt < 1 {
		return
	}
	switch ev.Status {
	case bettertest.StatusPassed, bettertest.StatusFailed, bettertest.StatusSkipped:
	default:
		return
	}
	key := attemptKey{task.Name, ev.Attempt}
	a := r.attempts[key]
	if a == nil {
		a = &attempt{}
		r.attempts[key] = a
	}
	res := bettertest.TestResult{Task: task.Name, Attempt: ev.Attempt, Status: ev.Status, DurationMS: ev.DurationMS}
	if ev.Event == "test_case" {
		if ev.Name != "" {
			res.Case, res.Output = ev.Name, ev.Output
			res.Test = TestID(task.Name, ev.Name)
			if ev.Suite != "" && checkTestID(ev.Suite) == nil && !strings.Contains(ev.Suite, "/") {
				res.Test = TestID(ev.Suite, ev.Name) // shards of one suite share their cases' history
			}
			e.addResult(r, a, res)
		}
		return
	}
	task.Attempts = ev.Attempt
	delete(r.attempts, key)
	if len(a.results) == 0 || (ev.Status == bettertest.StatusFailed && a.failed == 0) {
		if ev.Error != nil {
			res.Output = *ev.Error
		} else if ev.ExitCode != nil && *ev.ExitCode != 0 {
			res.Output = fmt.Sprintf("exit code %d", *ev.ExitCode)
		}
		res.Test = TestID(res.Task, "")
		e.addResult(r, a, res)
	}
	e.emit(withRun(hub.New(bettertest.BossEventTests,
		bettertest.TestResultsEvent{RunID: r.run.ID, Task: task.Name, Attempt: ev.Attempt, Results: a.results}), r.run.ID, task.Name))
}

// addResult keeps a test result of an attempt, its Test set, and has it stored.
func (e *engine) addResult(r *activeRun, a *attempt, res bettertest.TestResult) {
	if len(res.Output) > maxCaseOutput {
		res.Output = strings.ToValidUTF8(res.Output[len(res.Output)-maxCaseOutput:], "")
	}
	a.results = append(a.results, res)
	if res.Status == bettertest.StatusFailed {
		a.failed++
	}
	r.results = append(r.results, res)
	r.persistSoon()
	if !r.seen[res.Test] {
		r.seen[res.Test] = true
		r.tested = append(r.tested, res.Test)
	}
}

// apply applies one event of the report to the run.
func (e *engine) apply(r *activeRun, ev report) {
	t := now()
	if !r.mask.Empty() {
		ev.Output, ev.Reason = r.mask.MaskString(ev.Output), r.mask.MaskString(ev.Reason)
		if ev.Error != nil {
			masked := r.mask.MaskString(*ev.Error)
			ev.Error = &masked
		}
		if ev.Event == "task_attempt" || ev.Event == "task_end" { // the task's output has ended
			e.flushMasks(r, ev.Task, false)
		}
	}
	switch ev.Event {
	case "stage_start":
		if st, _ := r.stage(ev.Stage); st == nil {
			st := bettertest.Stage{Name: ev.Stage, Status: bettertest.StatusRunning, StartedMS: t, Tasks: []bettertest.Task{}}
			r.run.Stages = append(r.run.Stages, st)
			e.saveStage(r, len(r.run.Stages)-1)
		}
	case "stage_end":
		if st, i := r.stage(ev.Stage); st != nil {
			st.Status, st.FinishedMS = ev.Status, t
			e.saveStage(r, i)
		}
	case "task_start":
		st, _ := r.stage(ev.Stage)
		if st == nil {
			return
		}
		if task, _ := r.task(ev.Task); task != nil {
			return // names are unique in a pipeline; a repeat is ignored
		}
		st.Tasks = append(st.Tasks, bettertest.Task{Stage: ev.Stage, Name: ev.Task, Kind: ev.Kind, Status: bettertest.StatusRunning,
			StartedMS: t, Artifacts: []bettertest.ArtifactEvent{}})
		e.saveTask(r, ev.Task)
	case "task_uncached", "task_cached", "task_artifact", "task_end", "test_case", "task_attempt":
		task, _ := r.task(ev.Task)
		if task == nil {
			return
		}
		switch ev.Event {
		case "test_case":
			e.test(r, task, ev)
			return
		case "task_attempt":
			e.test(r, task, ev)
		case "task_uncached":
			task.Reason = ev.Reason
		case "task_cached":
			task.Cached = true
		case "task_artifact":
			e.addArtifact(task, ev)
		case "task_end":
			task.Status, task.ExitCode, task.Cached, task.FinishedMS = ev.Status, ev.ExitCode, string(ev.Cached) == "true", t
			task.Attempts, task.Flaky, task.Quarantined = max(task.Attempts, ev.Attempts), ev.Flaky, string(ev.Quarantined) == "true"
			task.WaitedMS, task.WaitedFor = max(0, ev.WaitedMS), r.waitedFor(ev.WaitedFor)
			if ev.Error != nil {
				task.Error = *ev.Error
			}
		}
		e.saveTask(r, ev.Task)
	case "pipeline_end":
		if ev.Error != nil {
			r.run.Error = *ev.Error
		}
	}
	// pipeline_start and events this boss does not know need nothing.
}

// waitedFor is what a task says it waited for, as the boss keeps it: a
// pipedef may be anyone's, so a few short, masked names at most.
func (r *activeRun) waitedFor(names []string) []string {
	var out []string
	for _, name := range names[:min(len(names), 8)] {
		name = strings.ToValidUTF8(name[:cutAt([]byte(name), 200)], "")
		out = append(out, r.mask.MaskString(name))
	}
	return out
}

func (e *engine) saveStage(r *activeRun, i int) {
	st, id := r.run.Stages[i], r.run.ID
	st.Tasks = nil
	e.record(r, func(tx *sql.Tx) error { return e.store.saveStage(tx, id, i, st) })
	e.publishStage(r, st)
}

func (e *engine) saveTask(r *activeRun, name string) {
	task, idx := r.task(name)
	if task.Kind == "test" {
		task.Tests = bettertest.CountTask(r.results, name)
	}
	t, id := *task, r.run.ID
	t.Artifacts = slices.Clone(t.Artifacts)
	e.record(r, func(tx *sql.Tx) error { return e.store.saveTask(tx, id, idx, t) })
	e.publishTask(r, t)
}

// finish ends a run: its status follows the pipedef's exit code,
// unless it was stopped. Stages and tasks that never ended end with it.
func (e *engine) finish(r *activeRun, code int) {
	r.finishing = true
	if r.killTimer != nil {
		r.killTimer.Stop()
	}
	r.run.FinishedMS = now()
	e.removeSecrets(r)
	if code != -1 && r.stopStatus == "" { // a stopped pipedef's exit code is the stop's, not its own
		c := code
		r.run.ExitCode = &c
	}
	switch {
	case r.stopStatus != "":
		r.run.Status, r.run.Error = r.stopStatus, r.stopError
	case code == 0:
		r.run.Status = bettertest.StatusPassed
	default:
		r.run.Status = bettertest.StatusFailed
		if r.run.Error == "" {
			r.run.Error = fmt.Sprintf("the pipedef exited with status %d: see its output", code)
		}
	}
	unfinished := bettertest.StatusFailed
	if r.stopStatus != "" {
		unfinished = r.stopStatus
	}
	for si := range r.run.Stages {
		st := &r.run.Stages[si]
		for ti := range st.Tasks {
			if st.Tasks[ti].Status == bettertest.StatusRunning {
				st.Tasks[ti].Status, st.Tasks[ti].FinishedMS = unfinished, r.run.FinishedMS
				e.saveTask(r, st.Tasks[ti].Name)
			}
		}
		if st.Status == bettertest.StatusRunning {
			st.Status, st.FinishedMS = unfinished, r.run.FinishedMS
			e.saveStage(r, si)
		}
	}
	e.saveRun(r)
	e.postStatus(r)
	if r.statuses != nil {
		close(r.statuses)
	}
	if r.proxy != nil {
		r.proxy.close()
	}
	if r.sandbox != "" {
		if err := os.RemoveAll(r.sandbox); err != nil {
			e.log.Warn("remove a run's sandbox directory", "dir", r.sandbox, "err", err)
		}
	}
	if r.checkout != "" {
		rp, dir := e.repos[r.run.Pipeline], r.checkout
		e.runsWG.Add(1) // a stopping boss waits for it: git's worktree list stays whole
		go func() {
			defer e.runsWG.Done()
			if err := rp.release(dir); err != nil {
				e.log.Warn("remove a run's worktree", "dir", dir, "err", err)
			}
		}()
	}
	if len(r.tested) > 0 {
		// Its tests' verdicts follow once it is recorded; the boss waits for
		// them before it closes the history.
		e.runsWG.Add(1)
		go func(tests [][2]string) {
			defer e.runsWG.Done()
			if err := e.judgeTests(context.Background(), tests); err != nil {
				e.log.Error("judge tests", "run", r.run.ID, "err", err)
			}
		}(pipelineTests(r.run.Pipeline, r.tested))
	}
	// It reads as it ended, from memory, until its end is in the history.
	delete(e.active, r.run.ID)
	e.ended[r.run.ID] = r
	e.store.w.add(change{apply: func(*sql.Tx) error { return nil }, then: func(error) {
		e.post(func(e *engine) {
			if !r.unsaved { // every change before this one is written
				delete(e.ended, r.run.ID)
				e.changed()
			}
		})
	}})
	e.note("run ended", "run", r.run.ID, "pipeline", r.run.Pipeline, "status", r.run.Status, "exit", code)
	if w := r.worker; w != nil {
		w.info.Assigned--
		e.publishWorker(w)
		if w.leaving && w.info.Assigned == 0 {
			e.drop(w)
		}
		e.dispatch() // its slot is free
	}
}

// stop stops a run with status and message: a queued run at once, a
// running one by SIGTERM to its process group, then SIGKILL after the grace
// period. The pipedef library's connections close with it, so the worker
// stops the containers.
func (e *engine) stop(r *activeRun, status, message string) {
	if r.stopStatus != "" {
		return
	}
	r.stopStatus, r.stopError = status, message
	if r.launching {
		return // launch sees it and ends the run
	}
	if r.cmd == nil { // queued, or awaiting approval
		for i, q := range e.queue {
			if q == r {
				e.queue = append(e.queue[:i], e.queue[i+1:]...)
			}
		}
		e.finish(r, -1)
		return
	}
	pgid := r.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	r.killTimer = time.AfterFunc(e.cfg.Grace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
}

// cancel stops a run on request.
func (b *Boss) cancel(id int64) (run bettertest.Run, err error) {
	b.do(func(e *engine) {
		r, ok := e.active[id]
		if !ok {
			err = errNotActive
			return
		}
		e.stop(r, bettertest.StatusCancelled, "cancelled")
		run = summary(r.run)
	})
	return run, err
}

var errNotActive = errors.New("run is not queued or running")

// stopRuns interrupts every run: the boss is stopping.
func (b *Boss) stopRuns() {
	b.do(func(e *engine) {
		for _, r := range e.active {
			e.stop(r, bettertest.StatusInterrupted, interruptedError)
		}
	})
}

func pipelineTests(pipeline string, tests []string) [][2]string {
	out := make([][2]string, len(tests))
	for i, t := range tests {
		out[i] = [2]string{pipeline, t}
	}
	return out
}
