package agent

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// probeImage names the one-file image of a worker binary: the binary at
// /bettertest, nothing else. It is made from the binary itself (static, so it
// runs alone), so a host without a registry has it.
const probeImage = "bettertest-probe"

// probeLabel marks probe images.
const probeLabel = "dev.bettertest.probe"

// probeContainer proves that the engine can start a container as a run's is
// started, with hc, the runs' host configuration (docker-init, the limits,
// the capabilities, no new privileges, the runs' isolated network), by
// running this very binary's `version` in one and seeing it exit 0. A worker
// whose engine answers but cannot start runs' containers then never says
// ready.
func probeContainer(ctx context.Context, docker *client.Client, owner string, hc container.HostConfig) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to start it in a container: %w", err)
	}
	sum, size, err := hashFile(exe)
	if err != nil {
		return err
	}
	ref := probeImage + ":" + sum[:16]
	_, err = docker.ImageInspect(ctx, ref)
	imported := client.IsErrNotFound(err)
	if imported {
		if err := importBinary(ctx, docker, exe, size, ref); err != nil {
			return fmt.Errorf("docker import this binary as %s: %w", ref, err)
		}
	} else if err != nil {
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	created, err := docker.ContainerCreate(ctx, &container.Config{
		Image:  ref,
		Cmd:    []string{"/bettertest", "version"},
		Labels: map[string]string{LabelWorker: owner},
	}, &hc, nil, nil, "")
	if err != nil {
		return fmt.Errorf("create a container of %s: %w", ref, err)
	}
	defer docker.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	exited, waitErr := docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start a container of %s: %w", ref, err)
	}
	select {
	case w := <-exited:
		if w.Error != nil || w.StatusCode != 0 {
			return fmt.Errorf("a container of %s running `bettertest version` exited with code %d %v", ref, w.StatusCode, w.Error)
		}
	case err := <-waitErr:
		return fmt.Errorf("wait for a container of %s: %w", ref, err)
	}
	if imported {
		// The probe images of earlier binaries (an upgrade leaves one behind)
		// go; this one's is in use by the probe container, so it stays.
		_, _ = docker.ImagesPrune(ctx, filters.NewArgs(filters.Arg("dangling", "false"), filters.Arg("label", probeLabel), filters.Arg("until", "1h")))
	}
	return nil
}

func hashFile(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// importBinary makes the one-file image ref of the binary at path.
func importBinary(ctx context.Context, docker *client.Client, path string, size int64, ref string) error {
	pr, pw := io.Pipe()
	go func() {
		f, err := os.Open(path)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		defer f.Close()
		tw := tar.NewWriter(pw)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bettertest", Mode: 0o755, Size: size}); err != nil {
			pw.CloseWithError(err)
			return
		}
		if _, err := io.CopyN(tw, f, size); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(tw.Close())
	}()
	rc, err := docker.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{Changes: []string{"LABEL " + probeLabel + "=1"}})
	if err != nil {
		pr.CloseWithError(err)
		return err
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		return err
	}
	// Workers that start at once may each import: the tag ends on one image,
	// and the others' are left untagged, to be pruned (unless in use).
	_, _ = docker.ImagesPrune(ctx, filters.NewArgs(filters.Arg("dangling", "true"), filters.Arg("label", probeLabel)))
	return nil
}
