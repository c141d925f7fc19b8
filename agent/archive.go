package agent

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// An artifact is a tar archive with one top-level entry, named archiveRoot: the
// file itself, or the directory holding everything else. The name is fixed so
// that the same files give the same archive wherever they came from.
const archiveRoot = "artifact"

// canonicalHeader is the header every packer writes for an entry: owner 0:0,
// time 0, and a mode that only keeps whether a file is executable, so that
// the same files give the same bytes on every machine.
func canonicalHeader(name string, typ byte, size int64, mode fs.FileMode, linkname string) *tar.Header {
	h := &tar.Header{Name: name, Typeflag: typ, ModTime: time.Unix(0, 0), Linkname: linkname}
	switch typ {
	case tar.TypeDir:
		h.Name, h.Mode = name+"/", 0o755
	case tar.TypeSymlink:
		h.Mode = 0o777
	default:
		h.Mode = 0o644
		if mode&0o111 != 0 {
			h.Mode = 0o755
		}
		if typ == tar.TypeReg {
			h.Size = size
		}
	}
	return h
}

// archiveLess orders entry names depth first with the children of a directory
// sorted by name: component by component, so "a/b" comes before "a.b".
func archiveLess(a, b string) bool {
	for {
		ha, ra, moreA := strings.Cut(a, "/")
		hb, rb, moreB := strings.Cut(b, "/")
		if ha != hb {
			return ha < hb
		}
		if !moreA || !moreB {
			return !moreA && moreB
		}
		a, b = ra, rb
	}
}

// entryName checks one entry name of an artifact archive and returns it
// without a trailing slash.
func entryName(h *tar.Header) (string, error) {
	name := strings.TrimSuffix(h.Name, "/")
	if name != archiveRoot && !strings.HasPrefix(name, archiveRoot+"/") {
		return "", fmt.Errorf("entry %q is outside the top-level %q entry that every artifact archive has", short(h.Name), archiveRoot)
	}
	if name != path.Clean(name) || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
		return "", fmt.Errorf("entry %q is not a clean relative path", short(h.Name))
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	default:
		return "", fmt.Errorf("entry %q is a %s: artifacts hold files, directories, symlinks and hard links only", short(h.Name), typeName(h.Typeflag))
	}
	// A root that links elsewhere would have Docker mount what it points to on
	// the worker's host.
	if name == archiveRoot && h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
		return "", fmt.Errorf("the top-level %q entry is a link: it must be a file or a directory", archiveRoot)
	}
	if h.Typeflag == tar.TypeLink && !strings.HasPrefix(h.Linkname, archiveRoot+"/") && h.Linkname != archiveRoot {
		return "", fmt.Errorf("hard link %q points outside the archive, to %q", short(h.Name), short(h.Linkname))
	}
	return name, nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// checkArchive reads every header of an artifact archive. Contents are
// skipped by seeking, so this costs little even for a large archive. What
// would fail only when the artifact is used fails here, before it is stored:
// an entry written through a symlink of the archive (to where it points,
// perhaps out of the tree); and an archive that unpacks to more than limit
// bytes, its files counted at the size they take once unpacked, so a sparse
// file is refused (a few KB that unpack to a GiB).
func checkArchive(f io.Reader, limit int64) error {
	tr := tar.NewReader(f)
	first := true
	var unpacked int64
	links := map[string]bool{} // the symlinks so far
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if first {
				return errors.New("the archive is empty: it needs its top-level \"artifact\" entry")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w", err)
		}
		name, err := entryName(h)
		if err != nil {
			return err
		}
		if first && name != archiveRoot {
			return fmt.Errorf("the first entry is %q: it must be the top-level %q entry", short(h.Name), archiveRoot)
		}
		if !first && name == archiveRoot {
			return fmt.Errorf("the archive has a second top-level %q entry", archiveRoot)
		}
		first = false
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if links[dir] {
				return fmt.Errorf("entry %q is inside %q, a symlink: it would be written to where the link points, perhaps out of the artifact", short(h.Name), short(dir))
			}
		}
		if h.Typeflag == tar.TypeLink && links[path.Clean(h.Linkname)] {
			return fmt.Errorf("hard link %q points to %q, a symlink: link to what it points to", short(h.Name), short(h.Linkname))
		}
		if h.Typeflag == tar.TypeSymlink {
			links[name] = true
		}
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return fmt.Errorf("entry %q is a sparse file (%s bytes once unpacked): artifacts hold whole files; pack it without --sparse", short(h.Name), strconv.FormatInt(h.Size, 10))
			}
		}
		if h.Typeflag == tar.TypeReg {
			unpacked += h.Size
			if unpacked > limit {
				return fmt.Errorf("%w: it unpacks to more than this worker's --cache-size of %d bytes: make it smaller or raise --cache-size", errTooBig, limit)
			}
		}
	}
}

// repackOutput turns the archive Docker makes of a container path into a
// canonical artifact archive. Docker walks directories in name order, which
// is the canonical order; a stream in any other order is refused, not sorted.
func repackOutput(docker io.Reader, w io.Writer, containerPath string) error {
	tr := tar.NewReader(docker)
	tw := tar.NewWriter(w)
	var root, prev string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read Docker's archive of %s: %w", containerPath, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if root == "" {
			root = name
		}
		rest, ok := strings.CutPrefix(name, root)
		if !ok || (rest != "" && rest[0] != '/') {
			return fmt.Errorf("Docker's archive of %s has an entry %q outside it", containerPath, short(h.Name))
		}
		where := path.Join(containerPath, rest)
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		default:
			return fmt.Errorf("%s is a %s: outputs hold files, directories, symlinks and hard links only", where, typeName(h.Typeflag))
		}
		if rest == "" && h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
			return fmt.Errorf("output %s is a link: name the file or directory it points to", containerPath)
		}
		name = archiveRoot + rest
		if prev != "" && !archiveLess(prev, name) {
			return fmt.Errorf("Docker's archive of %s is not in name order (%q after %q)", containerPath, name, prev)
		}
		prev = name
		link := h.Linkname
		if h.Typeflag == tar.TypeLink {
			linkRest, ok := strings.CutPrefix(link, root)
			if !ok || (linkRest != "" && linkRest[0] != '/') {
				return fmt.Errorf("%s is a hard link to %s, outside the output", where, link)
			}
			link = archiveRoot + linkRest
		}
		if err := tw.WriteHeader(canonicalHeader(name, h.Typeflag, h.Size, h.FileInfo().Mode(), link)); err != nil {
			return fmt.Errorf("pack %s: %w", where, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("pack %s: %w", where, err)
			}
		}
	}
	if root == "" {
		return fmt.Errorf("Docker's archive of %s is empty", containerPath)
	}
	return tw.Close()
}

// extractArchive unpacks an artifact archive into dir, which must be empty.
// Every write goes through an os.Root, so no entry, symlink or hard link in
// the archive can reach outside dir.
func extractArchive(archive io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(archive)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		name, err := entryName(h)
		if err != nil {
			return err
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		}
		mode := canonicalHeader(name, h.Typeflag, 0, h.FileInfo().Mode(), "").FileInfo().Mode().Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode); err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil { // not narrowed by the umask
				return err
			}
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil { // not narrowed by the umask
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := root.Link(path.Clean(h.Linkname), name); err != nil {
				return err
			}
		}
	}
}
