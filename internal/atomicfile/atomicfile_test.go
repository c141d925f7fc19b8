package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// holdsOnly fails unless dir's entries are want: a temporary file left
// behind would show up.
func holdsOnly(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", dir, got, want)
	}
}

// reads fails unless the file at path holds want.
func reads(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s holds %q, want %q", path, got, want)
	}
}

// failsNaming fails unless err says it could not write path.
func failsNaming(t *testing.T, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatalf("wrote %s", path)
	}
	if !strings.HasPrefix(err.Error(), "write "+path+": ") {
		t.Fatalf("error %q does not start with %q", err, "write "+path+": ")
	}
}

func TestWriteFileReplacesTheWholeFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	if err := WriteFile(path, []byte("a long first version\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reads(t, path, "short\n")
	holdsOnly(t, dir, "users.json")
}

// A reader that opened the old file reads the old content to its end: the
// new content is a new file renamed over the name, never written into the
// old one.
func TestReaderOfTheOldFileSeesItWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := WriteFile(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := old.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "old content" {
		t.Fatalf("the old file now reads %q, want %q", buf[:n], "old content")
	}
	reads(t, path, "new")
}

// The mode is perm exactly, whatever the umask and whatever mode the file
// it replaces had.
func TestWriteFileGivesTheModeAsked(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o077))
	path := filepath.Join(t.TempDir(), "f")
	for _, perm := range []os.FileMode{0o644, 0o600, 0o640, 0o755} {
		if err := WriteFile(path, []byte("x"), perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != perm {
			t.Fatalf("mode %v, want %v", fi.Mode(), perm)
		}
	}
}

func TestWriteFileMakesTheDirectoryPrivate(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	base := t.TempDir()
	path := filepath.Join(base, "a", "b", "token")
	if err := WriteFile(path, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(base, "a"), filepath.Join(base, "a", "b")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != os.ModeDir|0o700 {
			t.Fatalf("%s: mode %v, want %v", d, fi.Mode(), os.ModeDir|0o700)
		}
	}
}

// A name as long as a file's name may be still works: the temporary file's
// longer name must not be what fails.
func TestWriteFileTakesTheLongestName(t *testing.T) {
	dir := t.TempDir()
	name := strings.Repeat("n", 255)
	if err := WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	holdsOnly(t, dir, name)
}

// When the rename fails (a directory is in the way), the error says which
// file, the directory is left as it was, and no temporary file stays.
func TestFailedRenameLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "taken")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	failsNaming(t, WriteFile(path, []byte("x"), 0o600), path)
	holdsOnly(t, dir, "taken")
	holdsOnly(t, path, "inside")
}

// When the data cannot all be written (here the file size limit, as a full
// disk would), the file keeps its old content and no temporary file stays.
func TestFailedWriteKeepsTheOldContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	small := limit
	small.Cur = 4096
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, make([]byte, 8192), 0o600)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("error %v, want one that is EFBIG", err)
	}
	failsNaming(t, err, path)
	reads(t, path, "old")
	holdsOnly(t, dir, "f")
}

func TestUncreatableDirectoryIsAnError(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "sub", "f")
	err := WriteFile(path, []byte("x"), 0o600)
	if want := "write " + path + ": mkdir " + file + ": not a directory"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	holdsOnly(t, dir, "file")
}

// A bare name is a file in the working directory, its temporary file too.
func TestWriteFileTakesARelativeName(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("token", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	reads(t, filepath.Join(dir, "token"), "x")
	holdsOnly(t, dir, "token")
}
