package vmlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stand-in for the Fedora mirrors (they cannot be reached from here),
// serving stored copies of the real pages' formats.
func fedoraMirror(t *testing.T, image []byte) *httptest.Server {
	mux := http.NewServeMux()
	serve := func(path, file string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join("testdata", file)) })
	}
	serve("/pub/fedora/linux/releases/{$}", "releases.html")
	serve("/pub/fedora/linux/releases/44/Cloud/x86_64/images/{$}", "images.html")
	serve("/pub/fedora/linux/releases/44/Cloud/x86_64/images/Fedora-Cloud-44-1.7-x86_64-CHECKSUM", "Fedora-Cloud-44-1.7-x86_64-CHECKSUM")
	mux.HandleFunc("/pub/fedora/linux/releases/44/Cloud/x86_64/images/Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2", func(w http.ResponseWriter, r *http.Request) {
		w.Write(image)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestNewestFedora(t *testing.T) {
	srv := fedoraMirror(t, nil)
	img, err := NewestFedora(context.Background(), srv.Client(), srv.URL+"/pub/fedora/linux/releases/", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	want := CloudImage{
		Name:   "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2",
		URL:    srv.URL + "/pub/fedora/linux/releases/44/Cloud/x86_64/images/Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2",
		SHA256: "7e4fb7390f2a7d1b7c84e3fc1c5a2b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b",
	}
	if img != want {
		t.Fatalf("got %+v\nwant %+v", img, want)
	}
}

func TestGenericImageNamings(t *testing.T) {
	// Fedora 42 put the architecture first; 43 and later put it last.
	f42 := "SHA256 (Fedora-Cloud-Base-AmazonEC2.x86_64-42-1.1.raw.xz) = " + strings.Repeat("a", 64) + "\n" +
		"SHA256 (Fedora-Cloud-Base-Generic.x86_64-42-1.1.qcow2) = " + strings.Repeat("b", 64) + "\n"
	name, sum, err := genericImage(f42, "x86_64")
	if err != nil || name != "Fedora-Cloud-Base-Generic.x86_64-42-1.1.qcow2" || sum != strings.Repeat("b", 64) {
		t.Fatalf("f42: %q %q %v", name, sum, err)
	}
	if _, _, err := genericImage(f42, "aarch64"); err == nil || err.Error() != "no Fedora-Cloud-Base-Generic aarch64 qcow2 in the CHECKSUM file" {
		t.Fatalf("aarch64: %v", err)
	}
	if _, err := newestRelease("<html>nothing</html>"); err == nil || err.Error() != "no release directory in the Fedora release index" {
		t.Fatalf("empty index: %v", err)
	}
}

func TestDownloadVerifiesTheChecksum(t *testing.T) {
	payload := []byte("not really a qcow2\n")
	sum := sha256.Sum256(payload)
	srv := fedoraMirror(t, payload)
	img := CloudImage{Name: "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2",
		URL: srv.URL + "/pub/fedora/linux/releases/44/Cloud/x86_64/images/Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2"}

	dir := t.TempDir()
	img.SHA256 = strings.Repeat("0", 64)
	if _, err := Download(context.Background(), srv.Client(), img, dir, nil); err == nil ||
		err.Error() != "download "+img.URL+": sha256 is "+hex.EncodeToString(sum[:])+", but the CHECKSUM file says "+img.SHA256+": the download is corrupt or tampered with; run again" {
		t.Fatalf("bad checksum: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a failed download left %v", entries)
	}

	img.SHA256 = hex.EncodeToString(sum[:])
	path, err := Download(context.Background(), srv.Client(), img, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(payload) || path != filepath.Join(dir, img.Name) {
		t.Fatalf("downloaded %q to %s", got, path)
	}
}
