package boss

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// writer is the only code that writes the history once it is open. Changes
// come from anywhere, in order, without waiting for the disk: queue returns
// at once and do waits for its own change. One goroutine writes whatever is
// queued as one batch, in one transaction, so no lock of the boss is ever
// held across SQL and the engine never waits for the disk, and a flood of
// changes costs few commits.
type writer struct {
	db   *sql.DB           // one connection: SQLite has one writer
	kind func(error) error // names what an error means (a full disk), for whoever is told it

	mu     sync.Mutex
	queue  []change
	wake   chan struct{} // something is queued
	closed bool
	done   chan struct{} // closed once the last change is written
}

// change is one change of the history: apply runs in the batch's
// transaction; then, if not nil, is told how it went once the batch is
// written, on the writer's goroutine (it may send the engine a command).
type change struct {
	apply func(tx *sql.Tx) error
	then  func(error)
}

func newWriter(db *sql.DB, kind func(error) error) *writer {
	w := &writer{db: db, kind: kind, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// add queues a change.
func (w *writer) add(c change) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		if c.then != nil {
			go c.then(errWriterClosed) // not on this goroutine: it may be the engine, which then posts to itself
		}
		return
	}
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a batch is already due
	}
}

var errWriterClosed = fmt.Errorf("the history is closed: the boss is stopping")

// do queues a change and waits until it is written. Never call it holding
// from an engine command.
func (w *writer) do(apply func(tx *sql.Tx) error) error {
	res := make(chan error, 1)
	w.add(change{apply: apply, then: func(err error) { res <- err }})
	return <-res
}

// exec is do for one statement.
func (w *writer) exec(query string, args ...any) error {
	return w.do(func(tx *sql.Tx) error {
		_, err := tx.Exec(query, args...)
		return err
	})
}

func (w *writer) run() {
	defer close(w.done)
	for {
		<-w.wake
		w.mu.Lock()
		batch, closed := w.queue, w.closed
		w.queue = nil
		w.mu.Unlock()
		if len(batch) > 0 {
			w.write(batch)
		}
		if closed {
			w.mu.Lock()
			left := len(w.queue)
			w.mu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// write writes a batch in one transaction. When it fails, each change is
// written again on its own, so that each is told its own fate and one bad
// change does not undo the others.
func (w *writer) write(batch []change) {
	err := w.tx(func(tx *sql.Tx) error {
		for _, c := range batch {
			if err := c.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
	for _, c := range batch {
		if err != nil {
			err := w.tx(c.apply)
			if c.then != nil {
				c.then(err)
			}
			continue
		}
		if c.then != nil {
			c.then(nil)
		}
	}
}

func (w *writer) tx(apply func(tx *sql.Tx) error) error {
	tx, err := w.db.BeginTx(context.Background(), nil)
	if err != nil {
		return w.kind(err)
	}
	defer tx.Rollback()
	if err := apply(tx); err != nil {
		return w.kind(err)
	}
	return w.kind(tx.Commit())
}

// close writes what is queued and stops; changes added after it fail.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}
