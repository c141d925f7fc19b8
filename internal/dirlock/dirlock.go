// Package dirlock keeps a data dir to one process: a worker's or a boss's.
// Two of them on one dir would delete each other's files, or mark each
// other's live runs interrupted.
package dirlock

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Lock takes DIR/lock for this process until unlock is called or the
// process exits (the kernel drops a dead process's flock, so a crash never
// leaves the dir locked). what names the kind of process, for the message
// the next one gets: "worker", "boss".
func Lock(dir, what string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(f.Name()); rerr == nil && len(b) > 0 {
			holder = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		f.Close()
		return nil, fmt.Errorf("--data-dir %s is in use by another %s%s: stop it, or give each %s a data dir of its own", dir, what, holder, what)
	}
	// Who holds it, for that message; the lock itself is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
