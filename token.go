package bettertest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ReadTokenFile reads a secret token from path. It refuses a file that is
// missing, empty, or readable by group or others, saying how to fix it.
func ReadTokenFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("no token file given: pass --token-file PATH (a file with mode 0600 holding the token)")
	}
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("token file %s does not exist: create it with (umask 077; head -c 32 /dev/urandom | base64 > %s)", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("token file %s is not a regular file: point --token-file at the file that holds the token", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token file %s is readable by group or others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	token := bytes.TrimSpace(raw)
	if len(token) == 0 {
		return nil, fmt.Errorf("token file %s is empty: put a token in it, e.g. head -c 32 /dev/urandom | base64 > %s", path, path)
	}
	return token, nil
}
