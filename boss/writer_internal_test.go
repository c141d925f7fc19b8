package boss

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// The history's writer on a real SQLite file: changes are written in the
// order they were queued, whoever queued them; a change that fails is told
// so and undoes nothing of the others in its batch; close writes what is
// queued, and a change after it is refused.
func TestTheWriterKeepsOrderAndIsolatesFailures(t *testing.T) {
	st, _, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.w.exec(`CREATE TABLE log (n INTEGER NOT NULL CHECK (n >= 0))`); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	fates := map[int]string{}
	var wg sync.WaitGroup
	for n := -1; n < 200; n++ { // -1 breaks the CHECK
		wg.Add(1)
		st.w.add(change{
			apply: func(tx *sql.Tx) error { _, err := tx.Exec(`INSERT INTO log (n) VALUES (?)`, n); return err },
			then: func(err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				fates[n] = fmt.Sprint(err)
			},
		})
	}
	wg.Wait()
	if fates[-1] != "constraint failed: CHECK constraint failed: n >= 0 (275)" {
		t.Errorf("the bad change was told %q", fates[-1])
	}
	delete(fates, -1)
	for n, fate := range fates {
		if fate != "<nil>" {
			t.Errorf("change %d was told %q", n, fate)
		}
	}
	rows, err := st.rdb.Query(`SELECT n FROM log ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for rows.Next() {
		var n int
		rows.Scan(&n)
		got = append(got, n)
	}
	rows.Close()
	want := make([]int, 200)
	for i := range want {
		want[i] = i
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("written: %v", got)
	}

	done := make(chan error, 1)
	st.w.add(change{apply: func(tx *sql.Tx) error { _, err := tx.Exec(`INSERT INTO log (n) VALUES (1000)`); return err },
		then: func(err error) { done <- err }})
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("a change queued before close: %v", err)
	}
	if err := st.w.exec(`INSERT INTO log (n) VALUES (1)`); !errors.Is(err, errWriterClosed) {
		t.Errorf("a change after close: %v", err)
	}
}
