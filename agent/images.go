package agent

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
)

// Images built by a pipeline: POST /images builds a Dockerfile from a context
// directory the worker holds as an artifact, through Docker's build API,
// without a registry. The image is tagged by its key,
//
//	bettertest/built:KEYHEX
//
// where the key digests the context's artifact id, the Dockerfile's path in
// it, the build args, and the image IDs of its FROM images, resolved on this
// worker's engine. Docker's image store is the cache: an image whose tag
// exists is answered at once, with no build. A base image that changed (a
// rebuilt bettertest/base) changes the key, so its users are rebuilt.

// BuiltImageRepo is the repository of every image a pipeline built.
const BuiltImageRepo = "bettertest/built"

// MaxBuildArgs bounds the build args of one image.
const MaxBuildArgs = 64

// DecodeImageRequest reads and validates one ImageRequest.
func DecodeImageRequest(r io.Reader) (bettertest.ImageRequest, error) {
	var req bettertest.ImageRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, fmt.Errorf("request body is larger than %d bytes: send the context as an artifact, not in the request", tooBig.Limit)
		}
		problem := jsonProblem(err)
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			problem = strings.TrimPrefix(err.Error(), "json: ") + "; the fields are context, dockerfile, build_args, name"
		}
		return req, fmt.Errorf("request body is not a valid image request: %s", problem)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("request body has data after the JSON object: send exactly one object")
	}
	return req, validateImageRequest(req)
}

func validateImageRequest(req bettertest.ImageRequest) error {
	if _, ok := parseID(req.Context); !ok {
		return fmt.Errorf(`"context" %q is not an artifact id: upload the context directory (PUT /artifacts/SHA256) and send "sha256:" and its 64 hex digits`, short(req.Context))
	}
	if req.Dockerfile != "" && (path.IsAbs(req.Dockerfile) || path.Clean(req.Dockerfile) != req.Dockerfile || req.Dockerfile == "." ||
		strings.HasPrefix(req.Dockerfile, "../") || req.Dockerfile == ".." || strings.IndexByte(req.Dockerfile, 0) >= 0) {
		return fmt.Errorf(`"dockerfile" %q must be a clean path inside the context, e.g. "Dockerfile" or "ci/Dockerfile"`, short(req.Dockerfile))
	}
	if len(req.BuildArgs) > MaxBuildArgs {
		return fmt.Errorf(`"build_args" has %d entries: at most %d`, len(req.BuildArgs), MaxBuildArgs)
	}
	for k, v := range req.BuildArgs {
		if !validEnvName(k) {
			return fmt.Errorf(`"build_args" key %q is not an ARG name: use letters, digits and _, not starting with a digit`, short(k))
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf(`"build_args" value of %s contains a NUL byte: remove it`, k)
		}
	}
	if len(req.Name) > 256 || strings.ContainsFunc(req.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf(`"name" %q must be at most 256 characters, without control characters`, short(req.Name))
	}
	return nil
}

func (a *Agent) handleImages(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeImageRequest(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		writeRequestError(w, err)
		return
	}
	hexID, _ := parseID(req.Context)
	release, missing := a.store.pin([]string{hexID})
	if missing != "" {
		httpapi.Fail(w, httpapi.Unprocessable, fmt.Sprintf("context: artifact sha256:%s is not on this worker: upload it first (PUT /artifacts/%s)", hexID, hexID))
		return
	}
	defer release()
	if req.Dockerfile == "" {
		req.Dockerfile = "Dockerfile"
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	defer context.AfterFunc(a.stopping, func() { cancel(errShutdown) })()
	ev := newEventStream(w)
	img, err := a.buildImage(ctx, hexID, req, ev)
	if err != nil {
		if ctx.Err() != nil {
			_, detail := cutShort(ctx, bettertest.RunRequest{})
			err = errors.New(detail)
		}
		ev.send(bettertest.EventError, bettertest.ErrorEvent{Message: err.Error()})
		a.log.Info("image", "name", req.Name, "outcome", "failed", "detail", err)
		return
	}
	ev.send(bettertest.EventImage, img)
	a.log.Info("image", "name", req.Name, "tag", img.Tag, "cached", img.Cached, "duration", time.Duration(img.DurationMS)*time.Millisecond)
}

// buildImage finds the image req names in the engine, or builds it.
func (a *Agent) buildImage(ctx context.Context, hexID string, req bettertest.ImageRequest, ev *eventStream) (bettertest.ImageEvent, error) {
	dockerfile, err := readContextFile(a.store.archivePath(hexID), req.Dockerfile)
	if err != nil {
		return bettertest.ImageEvent{}, err
	}
	bases, err := fromImages(dockerfile, req.BuildArgs)
	if err != nil {
		return bettertest.ImageEvent{}, fmt.Errorf("%s: %w", req.Dockerfile, err)
	}
	baseIDs := make([]string, len(bases))
	for i, base := range bases {
		img, err := a.runner.docker.ImageInspect(ctx, base)
		if errdefs.IsNotFound(err) {
			return bettertest.ImageEvent{}, fmt.Errorf("%s: FROM %s: the image is not on this worker, and the worker builds without pulling: build it first (an image of an earlier stage), or docker load it there", req.Dockerfile, short(base))
		}
		if err != nil {
			return bettertest.ImageEvent{}, fmt.Errorf("Docker on this worker does not answer (%v): check that the Docker engine runs", err)
		}
		baseIDs[i] = img.ID
	}
	key := imageKey(req, baseIDs)
	tag := BuiltImageRepo + ":" + strings.TrimPrefix(key, "sha256:")
	if img, err := a.runner.docker.ImageInspect(ctx, tag); err == nil {
		return bettertest.ImageEvent{Tag: tag, ID: img.ID, Key: key, Cached: true}, nil
	} else if !errdefs.IsNotFound(err) {
		return bettertest.ImageEvent{}, fmt.Errorf("Docker on this worker does not answer (%v): check that the Docker engine runs", err)
	}
	ev.send(bettertest.EventUncached, bettertest.UncachedEvent{Key: key, Reason: "not built on this worker yet"})

	release, err := a.slots.acquire(ctx, func(position int) {
		ev.send(bettertest.EventQueued, bettertest.QueuedEvent{Position: position})
	})
	if err != nil {
		return bettertest.ImageEvent{}, err
	}
	defer release()
	started := time.Now()
	buildArgs := make(map[string]*string, len(req.BuildArgs))
	for k, v := range req.BuildArgs {
		buildArgs[k] = ptr(v)
	}
	contextTar, errc := dockerContext(a.store.archivePath(hexID))
	limits := a.runner.limits
	opts := build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  req.Dockerfile,
		BuildArgs:   buildArgs,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		// The build's steps run as a run does: within the worker's limits,
		// on the runs' network, which reaches the world but not the host.
		NetworkMode: string(a.runner.pool.hostConfig.NetworkMode),
		Memory:      limits.Memory,
		MemorySwap:  limits.Memory,
		Labels:      map[string]string{"dev.bettertest.image-key": key},
	}
	if limits.CPUs > 0 {
		opts.CPUPeriod = 100000
		opts.CPUQuota = int64(math.Round(limits.CPUs * 100000))
	}
	resp, err := a.runner.docker.ImageBuild(ctx, contextTar, opts)
	if err != nil {
		contextTar.Close()
		return bettertest.ImageEvent{}, fmt.Errorf("Docker could not build the image: %w", err)
	}
	defer resp.Body.Close()
	if err := streamBuild(resp.Body, ev); err != nil {
		return bettertest.ImageEvent{}, err
	}
	if err := <-errc; err != nil {
		return bettertest.ImageEvent{}, fmt.Errorf("context: %w", err)
	}
	img, err := a.runner.docker.ImageInspect(ctx, tag)
	if err != nil {
		return bettertest.ImageEvent{}, fmt.Errorf("the image was built but Docker cannot find its tag %s: %w", tag, err)
	}
	return bettertest.ImageEvent{Tag: tag, ID: img.ID, Key: key, DurationMS: time.Since(started).Milliseconds()}, nil
}

// streamBuild sends the build's progress as output events and returns its error.
func streamBuild(body io.Reader, ev *eventStream) error {
	dec := json.NewDecoder(body)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("lost the build's progress stream from Docker: %v", err)
		}
		if msg.Error != nil {
			ev.flushPartial()
			return fmt.Errorf("the image's build failed: %s", strings.TrimSpace(msg.Error.Message))
		}
		if msg.Stream != "" {
			ev.output("stdout", []byte(msg.Stream))
			ev.flush()
		}
	}
}

// imageKey digests what an image is made of.
func imageKey(req bettertest.ImageRequest, baseIDs []string) string {
	data, err := json.Marshal(struct {
		Context    string            `json:"context"`
		Dockerfile string            `json:"dockerfile"`
		BuildArgs  map[string]string `json:"build_args"`
		Bases      []string          `json:"bases"`
	}{req.Context, req.Dockerfile, req.BuildArgs, baseIDs})
	if err != nil {
		panic(err) // strings always marshal
	}
	sum := sha256.Sum256(append([]byte("bettertest image v1\n"), data...))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fromImages lists the images a Dockerfile's FROM lines name, other than
// its own stages and scratch, with ARGs declared before the first FROM
// expanded (build args override their defaults).
func fromImages(dockerfile []byte, buildArgs map[string]string) ([]string, error) {
	args := map[string]string{}
	stages := map[string]bool{}
	var images []string
	sawFrom := false
	for _, line := range logicalLines(dockerfile) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if sawFrom {
				continue
			}
			for _, decl := range fields[1:] {
				name, value, _ := strings.Cut(decl, "=")
				if v, ok := buildArgs[name]; ok {
					value = v
				}
				args[name] = strings.Trim(value, `"'`)
			}
		case "FROM":
			sawFrom = true
			rest := fields[1:]
			for len(rest) > 0 && strings.HasPrefix(rest[0], "--") {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				return nil, errors.New("a FROM line names no image")
			}
			ref := os.Expand(rest[0], func(k string) string { return args[k] })
			if ref == "" {
				return nil, fmt.Errorf("FROM %s is empty once its ARGs are expanded: give the ARG a default or a build arg", rest[0])
			}
			if ref != "scratch" && !stages[strings.ToLower(ref)] {
				images = append(images, ref)
			}
			if len(rest) >= 3 && strings.EqualFold(rest[1], "AS") {
				stages[strings.ToLower(rest[2])] = true
			}
		}
	}
	if len(images) == 0 && !sawFrom {
		return nil, errors.New("no FROM line: a Dockerfile starts from an image")
	}
	return images, nil
}

// logicalLines joins a Dockerfile's continued lines and drops comments.
func logicalLines(data []byte) []string {
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " \t\r"), `\`); ok {
			cur.WriteString(s)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// readContextFile reads one regular file of a context artifact.
func readContextFile(archive, name string) ([]byte, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	sawDir := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		if h.Name == archiveRoot+"/" {
			sawDir = true
		}
		if h.Name == archiveRoot+"/"+name && h.Typeflag == tar.TypeReg {
			if h.Size > MaxRequestBytes {
				return nil, fmt.Errorf("%s is %d bytes: a Dockerfile is at most %d", name, h.Size, MaxRequestBytes)
			}
			return io.ReadAll(tr)
		}
	}
	if !sawDir {
		return nil, errors.New(`"context" is a file: upload the directory that holds the Dockerfile`)
	}
	return nil, fmt.Errorf("the context has no file %s: name the Dockerfile's path inside the context (dockerfile=)", name)
}

// dockerContext streams a context artifact as the tar Docker's build API
// reads: the entries under the archive's top-level directory, at the root.
// Its error (after the stream ended) comes on the channel.
func dockerContext(archive string) (io.ReadCloser, <-chan error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := rerootArchive(archive, pw)
		pw.CloseWithError(err)
		errc <- err
	}()
	return pr, errc
}

func rerootArchive(archive string, w io.Writer) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	tw := tar.NewWriter(w)
	prefix := archiveRoot + "/"
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		name, ok := strings.CutPrefix(h.Name, prefix)
		if !ok || name == "" {
			continue // the top-level directory itself
		}
		h.Name = name
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(h.Linkname, prefix)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
