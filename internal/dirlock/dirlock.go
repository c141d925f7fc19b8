// Package dirlock keeps a data dir to one process: a worker's or a boss's.
// Two of them on one dir would delete each other's files, or mark each
// other's live runs interrupted.
package dirlock

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Lock takes DIR/lock for this process until unlock is called or the
// process exits. what names the kind of process, for the message the next
// one gets: "worker", "boss".
//
// The lock is a POSIX record lock (fcntl), not flock: it belongs to the
// process alone, so a child that is being started (forked, not yet exec'd)
// when the process is killed does not hold it on for a moment, and the
// kernel says which process holds it.
func Lock(dir, what string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		holder := ""
		if syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk) == nil && lk.Type != syscall.F_UNLCK {
			holder = fmt.Sprintf(" (pid %d)", lk.Pid)
		}
		f.Close()
		return nil, fmt.Errorf("--data-dir %s is in use by another %s%s: stop it, or give each %s a data dir of its own", dir, what, holder, what)
	}
	return func() { f.Close() }, nil
}
