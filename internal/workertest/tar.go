package workertest

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

// TarEntries lists an archive, one line per entry made by line from its
// header and content, so a test compares a whole archive at once.
func TarEntries(t testing.TB, data []byte, line func(h *tar.Header, content []byte) string) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, line(h, content))
	}
}
