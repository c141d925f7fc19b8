// Package atomicfile writes files so that readers see the old content or the
// new, never a part: write a temporary file beside the target, then rename.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// maxBase bounds the part of the target's name the temporary file's name
// repeats: with the dot, ".tmp" and CreateTemp's digits it stays within
// the 255 bytes a name may have, so a target whose name is that long works.
const maxBase = 200

// WriteFile writes data to path with mode perm (exactly: the umask does not
// apply), creating the directory (mode 0700) when missing. On failure the
// file at path is as it was and no temporary file is left.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	dir, base := filepath.Dir(path), filepath.Base(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+base[:min(len(base), maxBase)]+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
