package vmlab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FedoraReleases is the index of Fedora releases, one directory per release number.
const FedoraReleases = "https://download.fedoraproject.org/pub/fedora/linux/releases/"

// CloudImage is a cloud image to download and the sha256 it must have.
type CloudImage struct {
	Name, URL, SHA256 string
}

var releaseDir = regexp.MustCompile(`href="(\d+)/"`)

// newestRelease returns the highest release number in the index page.
func newestRelease(index string) (int, error) {
	newest := 0
	for _, m := range releaseDir.FindAllStringSubmatch(index, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil && n > newest {
			newest = n
		}
	}
	if newest == 0 {
		return 0, fmt.Errorf("no release directory in the Fedora release index")
	}
	return newest, nil
}

var checksumFile = regexp.MustCompile(`href="(Fedora-Cloud-[^"/]*-CHECKSUM)"`)

// checksumName finds the CHECKSUM file in an images directory listing.
func checksumName(listing string) (string, error) {
	m := checksumFile.FindStringSubmatch(listing)
	if m == nil {
		return "", fmt.Errorf("no Fedora-Cloud-*-CHECKSUM file in the images listing")
	}
	return m[1], nil
}

var bsdSum = regexp.MustCompile(`^SHA256 \(([^)]+)\) = ([0-9a-fA-F]{64})$`)

// genericImage finds the Generic cloud qcow2 for arch and its sha256 in a
// CHECKSUM file (clearsigned, BSD-style lines). The UEFI-UKI, AmazonEC2 and
// other images beside it are not the one a plain VM boots.
func genericImage(checksums, arch string) (name, sum string, err error) {
	sc := bufio.NewScanner(strings.NewReader(checksums))
	for sc.Scan() {
		m := bsdSum.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		n := m[1]
		if strings.HasPrefix(n, "Fedora-Cloud-Base-Generic") && strings.HasSuffix(n, ".qcow2") && strings.Contains(n, arch) {
			return n, strings.ToLower(m[2]), nil
		}
	}
	return "", "", fmt.Errorf("no Fedora-Cloud-Base-Generic %s qcow2 in the CHECKSUM file", arch)
}

// NewestFedora finds the newest Fedora Cloud Base Generic image for arch
// (uname -m) from the release index: never a hard-coded version.
func NewestFedora(ctx context.Context, client *http.Client, releases, arch string) (CloudImage, error) {
	index, err := fetchText(ctx, client, releases)
	if err != nil {
		return CloudImage{}, err
	}
	n, err := newestRelease(index)
	if err != nil {
		return CloudImage{}, fmt.Errorf("%s: %w", releases, err)
	}
	imagesURL := fmt.Sprintf("%s%d/Cloud/%s/images/", releases, n, arch)
	listing, err := fetchText(ctx, client, imagesURL)
	if err != nil {
		return CloudImage{}, err
	}
	sumName, err := checksumName(listing)
	if err != nil {
		return CloudImage{}, fmt.Errorf("%s: %w", imagesURL, err)
	}
	checksums, err := fetchText(ctx, client, imagesURL+sumName)
	if err != nil {
		return CloudImage{}, err
	}
	name, sum, err := genericImage(checksums, arch)
	if err != nil {
		return CloudImage{}, fmt.Errorf("%s%s: %w", imagesURL, sumName, err)
	}
	return CloudImage{Name: name, URL: imagesURL + name, SHA256: sum}, nil
}

// get answers a GET with a 200, or fails saying what to do.
func get(ctx context.Context, client *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w: check the network, or pass --image with a local cloud image", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp, nil
}

func fetchText(ctx context.Context, client *http.Client, url string) (string, error) {
	resp, err := get(ctx, client, url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return string(b), err
}

// Download fetches img into dir once, verifying its sha256 as it streams: the
// file appears under its name only when complete and correct. progress is
// called as bytes arrive.
func Download(ctx context.Context, client *http.Client, img CloudImage, dir string, progress func(done, total int64)) (string, error) {
	path := filepath.Join(dir, img.Name)
	if _, err := os.Stat(path); err == nil {
		return path, nil // verified when it was downloaded
	}
	resp, err := get(ctx, client, img.URL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+img.Name+".part*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	counter := &progressWriter{total: resp.ContentLength, report: progress, every: time.Second}
	if _, err := io.Copy(io.MultiWriter(tmp, h, counter), resp.Body); err != nil {
		tmp.Close()
		return "", fmt.Errorf("download %s: %w", img.URL, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != img.SHA256 {
		return "", fmt.Errorf("download %s: sha256 is %s, but the CHECKSUM file says %s: the download is corrupt or tampered with; run again", img.URL, got, img.SHA256)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

type progressWriter struct {
	done, total int64
	report      func(done, total int64)
	every       time.Duration
	last        time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.report != nil && time.Since(p.last) >= p.every {
		p.last = time.Now()
		p.report(p.done, p.total)
	}
	return len(b), nil
}
