package agent_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	wt "github.com/bettertest/bettertest/internal/workertest"
)

// A sparse archive made by GNU tar (a few KB holding a 1 GiB file of holes)
// is refused at upload under a 64 MiB cache: it is counted as it unpacks.
func TestASparseBombIsRefusedAtUpload(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{CacheSize: "64MiB"})
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "artifact"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "artifact", "holes"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	f.Close()
	archive := filepath.Join(t.TempDir(), "bomb.tar")
	if out, err := exec.Command("tar", "--sparse", "--format=posix", "-C", dir, "-cf", archive, "artifact").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	data, err := os.ReadFile(archive)
	if err != nil || len(data) > 64<<10 {
		t.Fatalf("the sparse archive is %d bytes (%v), want a few KB", len(data), err)
	}
	id := digest(data)
	status, body := put(t, w, data)
	want := fmt.Sprintf(`{"error":"artifact sha256:%s was not stored: not an artifact archive: entry \"artifact/holes\" is a sparse file (1073741824 bytes once unpacked): artifacts hold whole files; pack it without --sparse"}`+"\n", id)
	if status != http.StatusBadRequest || body != want {
		t.Fatalf("PUT a sparse bomb: %d %s, want 400 %s", status, body, want)
	}
	if status, _ := head(t, w, id); status != http.StatusNotFound {
		t.Fatalf("HEAD after the refused upload: %d, want 404: it must not be stored", status)
	}
}

// An archive that writes through one of its own symlinks (to wherever the
// link points) is refused at upload, not when a run uses it.
func TestHostileArchivesAreRefusedAtUpload(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{CacheSize: "1MiB"})
	hostile := func(headers ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range headers {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write(make([]byte, h.Size))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	dir := &tar.Header{Name: "artifact/", Typeflag: tar.TypeDir, Mode: 0o755}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"through a symlink", hostile(dir,
			&tar.Header{Name: "artifact/etc", Typeflag: tar.TypeSymlink, Linkname: "/etc", Mode: 0o777},
			&tar.Header{Name: "artifact/etc/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}),
			`entry \"artifact/etc/cron.d/x\" is inside \"artifact/etc\", a symlink: it would be written to where the link points, perhaps out of the artifact`},
		{"a hard link to a symlink", hostile(dir,
			&tar.Header{Name: "artifact/up", Typeflag: tar.TypeSymlink, Linkname: "../..", Mode: 0o777},
			&tar.Header{Name: "artifact/x", Typeflag: tar.TypeLink, Linkname: "artifact/up"}),
			`hard link \"artifact/x\" points to \"artifact/up\", a symlink: link to what it points to`},
	} {
		id := digest(c.data)
		status, body := put(t, w, c.data)
		want := fmt.Sprintf(`{"error":"artifact sha256:%s was not stored: not an artifact archive: %s"}`+"\n", id, c.want)
		if status != http.StatusBadRequest || body != want {
			t.Errorf("%s: %d %s, want 400 %s", c.name, status, body, want)
		}
	}
}
