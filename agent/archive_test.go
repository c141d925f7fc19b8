package agent

import (
	"archive/tar"
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestArchiveOrderIsDepthFirstByName(t *testing.T) {
	names := []string{"a.b", "a/b/c", "artifact", "a", "a/b", "a-b", "a/a", "b"}
	sort.Slice(names, func(i, j int) bool { return archiveLess(names[i], names[j]) })
	want := []string{"a", "a/a", "a/b", "a/b/c", "a-b", "a.b", "artifact", "b"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("got %v, want %v", names, want)
	}
}

type hdr struct {
	name, link string
	typ        byte
	mode       int64
	content    string
}

func tarOf(t *testing.T, entries ...hdr) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.content)),
			Uid: 1000, Gid: 1000, Uname: "alice", ModTime: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC),
			PAXRecords: map[string]string{"SCHILY.xattr.user.x": "y"}}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.content)
	}
	tw.Close()
	return buf.Bytes()
}

// Docker archives a container path under its base name, with owners, times
// and extended attributes; the artifact keeps none of those.
func TestRepackOutputIsCanonical(t *testing.T) {
	docker := tarOf(t,
		hdr{name: "out/", typ: tar.TypeDir, mode: 0o700},
		hdr{name: "out/bin", typ: tar.TypeReg, mode: 0o4750, content: "ELF"},
		hdr{name: "out/doc", typ: tar.TypeReg, mode: 0o600, content: "read me"},
		hdr{name: "out/link", typ: tar.TypeSymlink, link: "../etc/passwd"},
		hdr{name: "out/same", typ: tar.TypeLink, link: "out/doc"},
	)
	var got bytes.Buffer
	if err := repackOutput(bytes.NewReader(docker), &got, "/srv/out"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "artifact/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)},
		{Name: "artifact/bin", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3, ModTime: time.Unix(0, 0)},
		{Name: "artifact/doc", Typeflag: tar.TypeReg, Mode: 0o644, Size: 7, ModTime: time.Unix(0, 0)},
		{Name: "artifact/link", Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: "../etc/passwd", ModTime: time.Unix(0, 0)},
		{Name: "artifact/same", Typeflag: tar.TypeLink, Mode: 0o644, Linkname: "artifact/doc", ModTime: time.Unix(0, 0)},
	} {
		tw.WriteHeader(h)
		switch h.Name {
		case "artifact/bin":
			io.WriteString(tw, "ELF")
		case "artifact/doc":
			io.WriteString(tw, "read me")
		}
	}
	tw.Close()
	want := buf.Bytes()
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("repacked archive differs from the canonical one (%d vs %d bytes)", got.Len(), len(want))
	}
}

func TestRepackOutputRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		err  string
	}{
		{"device", tarOf(t, hdr{name: "out/", typ: tar.TypeDir}, hdr{name: "out/null", typ: tar.TypeChar}),
			"/out/null is a character device: outputs hold files, directories, symlinks and hard links only"},
		{"fifo", tarOf(t, hdr{name: "p", typ: tar.TypeFifo}),
			"/out is a named pipe: outputs hold files, directories, symlinks and hard links only"},
		{"order", tarOf(t, hdr{name: "out/", typ: tar.TypeDir}, hdr{name: "out/b", typ: tar.TypeReg}, hdr{name: "out/a", typ: tar.TypeReg}),
			`Docker's archive of /out is not in name order ("artifact/a" after "artifact/b")`},
		{"outside", tarOf(t, hdr{name: "out/", typ: tar.TypeDir}, hdr{name: "other", typ: tar.TypeReg}),
			`Docker's archive of /out has an entry "other" outside it`},
		{"link outside", tarOf(t, hdr{name: "out/", typ: tar.TypeDir}, hdr{name: "out/l", typ: tar.TypeLink, link: "etc/passwd"}),
			"/out/l is a hard link to etc/passwd, outside the output"},
		{"empty", tarOf(t), "Docker's archive of /out is empty"},
		{"symlink root", tarOf(t, hdr{name: "out", typ: tar.TypeSymlink, link: "/etc"}), "output /out is a link: name the file or directory it points to"},
	} {
		err := repackOutput(bytes.NewReader(c.in), io.Discard, "/out")
		if err == nil || err.Error() != c.err {
			t.Errorf("%s: got %v, want %s", c.name, err, c.err)
		}
	}
}

// No entry of an uploaded archive can write outside the tree it unpacks
// into, whatever symlinks or hard links come first.
func TestExtractStaysInside(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []hdr
		err     string
	}{
		{"through a symlink", []hdr{
			{name: "artifact/", typ: tar.TypeDir, mode: 0o755},
			{name: "artifact/up", typ: tar.TypeSymlink, link: "../.."},
			{name: "artifact/up/escaped", typ: tar.TypeReg, content: "x"},
		}, "mkdirat artifact/up: statat artifact/up: path escapes from parent"},
		{"absolute symlink", []hdr{
			{name: "artifact/", typ: tar.TypeDir, mode: 0o755},
			{name: "artifact/etc", typ: tar.TypeSymlink, link: "/tmp"},
			{name: "artifact/etc/escaped", typ: tar.TypeReg, content: "x"},
		}, "mkdirat artifact/etc: statat artifact/etc: path escapes from parent"},
		{"symlink root", []hdr{
			{name: "artifact", typ: tar.TypeSymlink, link: "/etc"},
		}, `the top-level "artifact" entry is a link: it must be a file or a directory`},
		{"hard link", []hdr{
			{name: "artifact/", typ: tar.TypeDir, mode: 0o755},
			{name: "artifact/l", typ: tar.TypeLink, link: "artifact/../../escaped"},
		}, "linkat ../escaped artifact/l: path escapes from parent"},
	} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "a", "b")
		os.MkdirAll(dir, 0o755)
		err := extractArchive(bytes.NewReader(tarOf(t, c.entries...)), dir)
		if err == nil || err.Error() != c.err {
			t.Errorf("%s: got %v, want %s", c.name, err, c.err)
		}
		var found []string
		filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
			if strings.Contains(p, "escaped") {
				found = append(found, p)
			}
			return nil
		})
		if len(found) > 0 {
			t.Errorf("%s: wrote %v", c.name, found)
		}
	}
}

func TestExtractMakesTheTree(t *testing.T) {
	dir := t.TempDir()
	in := tarOf(t,
		hdr{name: "artifact/", typ: tar.TypeDir, mode: 0o700},
		hdr{name: "artifact/run", typ: tar.TypeReg, mode: 0o700, content: "#!/bin/sh\n"},
		hdr{name: "artifact/sub/doc", typ: tar.TypeReg, mode: 0o600, content: "doc"}, // no entry for sub/
		hdr{name: "artifact/same", typ: tar.TypeLink, link: "artifact/sub/doc"},
		hdr{name: "artifact/ln", typ: tar.TypeSymlink, link: "sub/doc"},
	)
	if err := extractArchive(bytes.NewReader(in), dir); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		info, _ := os.Lstat(p)
		rel, _ := filepath.Rel(dir, p)
		line := info.Mode().String() + " " + rel
		if info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			line += " " + string(data)
		}
		got = append(got, line)
		return nil
	})
	want := []string{"drwxr-xr-x .", "drwxr-xr-x artifact", "Lrwxrwxrwx artifact/ln", "-rwxr-xr-x artifact/run #!/bin/sh\n",
		"-rw-r--r-- artifact/same doc", "drwxr-xr-x artifact/sub", "-rw-r--r-- artifact/sub/doc doc"}
	if !slices.Equal(got, want) {
		t.Fatalf("tree:\n%q\nwant\n%q", got, want)
	}
}

func TestStoreEvictsLeastRecentlyUsedButNeverPinned(t *testing.T) {
	dir := t.TempDir()
	archiveOf := func(content string) []byte {
		return tarOf(t, hdr{name: "artifact", typ: tar.TypeReg, content: content})
	}
	limit := int64(len(archiveOf("a")))*2 + 100 // room for two
	s, unlock, err := openStore(dir, limit, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	add := func(content string) string {
		in, err := s.create()
		if err != nil {
			t.Fatal(err)
		}
		in.Write(archiveOf(content))
		id, _, release, err := in.commit("")
		if err != nil {
			t.Fatal(err)
		}
		release()
		return id
	}
	has := func(ids ...string) []bool {
		var out []bool
		for _, id := range ids {
			_, ok := s.items[id]
			out = append(out, ok)
		}
		return out
	}
	a, b := add("a"), add("b")
	release, missing := s.pin([]string{a}) // a is in use, and now used after b
	if missing != "" {
		t.Fatal(missing)
	}
	c := add("c")
	if got := has(a, b, c); !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("after adding c: %v", got)
	}
	release()
	d := add("d") // a was used before c
	if got := has(a, c, d); !slices.Equal(got, []bool{false, true, true}) {
		t.Fatalf("after adding d: %v", got)
	}

	// A restart finds what is left, in the same order of use.
	unlock()
	s, unlock, err = openStore(dir, limit, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if got := has(a, b, c, d); !slices.Equal(got, []bool{false, false, true, true}) {
		t.Fatalf("after restart: %v", got)
	}
	e := add("e")
	if got := has(c, d, e); !slices.Equal(got, []bool{false, true, true}) {
		t.Fatalf("after adding e: %v", got)
	}
}
