package boss

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
)

// The artifacts of a run's tasks are kept by the worker that ran it; the
// boss serves them from there, so its UI and API can offer them without
// storing a copy.

var artifactHex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// addArtifact adds the artifact a task_artifact event reports to its task:
// a test's with the attempt that kept it, the one after those that ended;
// and a build answered from the cache learns which run built it (see
// builtBy).
func (e *engine) addArtifact(task *bettertest.Task, ev report) {
	a := bettertest.ArtifactEvent{Path: ev.Path, ID: ev.ID, Size: ev.Size}
	if task.Kind == "test" {
		a.Attempt = task.Attempts + 1
	}
	task.Artifacts = append(task.Artifacts, a)
	if ev.builtBy != 0 {
		task.BuiltBy = ev.builtBy
	}
}

// builtBy is the run that first made an artifact, 0 when the history does
// not know it (or cannot be read: the link is only missing). The pipedef's
// reader asks before it hands the event to the engine, which does no SQL.
func (b *Boss) builtBy(id string) int64 {
	run, err := b.store.builtBy(context.Background(), id)
	if err != nil {
		b.log.Warn("history", "err", err)
	}
	return run
}

// handleArtifact streams an artifact of a run from the worker that ran it:
// a file as itself, a directory as a tar of it named after it. Nothing is
// held in memory but a copy buffer.
func (b *Boss) handleArtifact(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	hex := chi.URLParam(r, "sha256")
	if !artifactHex.MatchString(hex) {
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("%q is not an artifact id: use the 64 lowercase hex digits after sha256: of one of the run's artifacts", shortArg(hex)))
		return
	}
	run, err := b.runByID(r.Context(), id)
	if err != nil {
		b.writeRunError(w, r, id, err)
		return
	}
	art, task := findArtifact(run, "sha256:"+hex)
	if task == "" {
		httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("run #%d has no artifact sha256:%s: its task pages list the artifacts it has", id, hex))
		return
	}
	what := fmt.Sprintf("%s of task %s of run #%d", art.Path, task, id)
	resp, err := b.fetchArtifact(r.Context(), run.Worker, hex, what)
	if err != nil {
		b.api().Error(w, r, err)
		return
	}
	defer resp.Body.Close()
	tr := tar.NewReader(resp.Body)
	hdr, err := tr.Next()
	if err == nil && strings.TrimSuffix(hdr.Name, "/") != "artifact" {
		err = fmt.Errorf("it begins with %q, not the artifact's entry", hdr.Name)
	}
	if err != nil {
		b.api().Error(w, r, httpapi.Errorf(httpapi.BadGateway, "worker %s sent %s as no artifact's archive (%v): run the pipeline again to make it anew", run.Worker, what, err))
		return
	}
	if err := serveArchive(w, tr, hdr, art.Path); err != nil {
		// The answer has begun: only a broken connection can tell the
		// client that what it got is not whole.
		b.log.Warn("artifact download cut short", "run", id, "artifact", art.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// findArtifact is the artifact id of one of run's tasks, and that task's
// name ("" when no task has it).
func findArtifact(run bettertest.Run, id string) (bettertest.ArtifactEvent, string) {
	for _, st := range run.Stages {
		for _, t := range st.Tasks {
			for _, a := range t.Artifacts {
				if a.ID == id {
					return a, t.Name
				}
			}
		}
	}
	return bettertest.ArtifactEvent{}, ""
}

// fetchArtifact asks worker name for artifact hex, which is what (for
// messages); the answer's body is the artifact's archive.
func (b *Boss) fetchArtifact(ctx context.Context, name, hex, what string) (*http.Response, error) {
	var cfg *WorkerConfig
	b.do(func(e *engine) {
		for _, w := range e.workers {
			if w.cfg.Name == name && !w.gone {
				c := w.cfg
				cfg = &c
			}
		}
	})
	rebuild := "run the pipeline again to make it anew"
	if cfg == nil {
		return nil, httpapi.Errorf(httpapi.Gone, "%s was kept by worker %q, which is no longer one of this boss's workers: %s", what, name, rebuild)
	}
	token, err := bettertest.ReadTokenFile(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.URL, "/")+"/artifacts/"+hex, nil)
	if err != nil {
		return nil, fmt.Errorf("the worker URL %s: %w", cfg.URL, err)
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, httpapi.Errorf(httpapi.BadGateway, "%s is kept by worker %s, which cannot be reached (%v): start it again, or %s", what, name, unwrapURL(err), rebuild)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, httpapi.Errorf(httpapi.Gone, "worker %s no longer has %s (it makes room for newer artifacts within its --cache-size): %s", name, what, rebuild)
	}
	var apiErr bettertest.APIError
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&apiErr)
	return nil, httpapi.Errorf(httpapi.BadGateway, "worker %s answered HTTP %d for %s: %s", name, resp.StatusCode, what, apiErr.Error)
}

// serveArchive answers with an artifact's archive, read from tr, whose
// first entry hdr is "artifact": a file, sent as itself, or a directory,
// sent as a tar whose top-level directory is named as the artifact's path.
func serveArchive(w http.ResponseWriter, tr *tar.Reader, hdr *tar.Header, artifactPath string) error {
	name := path.Base(artifactPath)
	buf := make([]byte, 1<<20) // fewer, larger reads and writes than io.Copy's 32 KiB: a faster download
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if hdr.Typeflag == tar.TypeReg {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(hdr.Size, 10))
		h.Set("Content-Disposition", attachment(name))
		_, err := io.CopyBuffer(w, tr, buf)
		return err
	}
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Disposition", attachment(name+".tar"))
	tw := tar.NewWriter(w)
	var err error
	for ; err == nil; hdr, err = tr.Next() {
		hdr.Name = rename(hdr.Name, name)
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = rename(hdr.Linkname, name)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(tw, tr, buf); err != nil {
			return err
		}
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the artifact's archive: %w", err)
	}
	return tw.Close()
}

// attachment is a Content-Disposition that saves the answer as a file named
// name (encoded as RFC 2231 says when it is not plain ASCII); never shown
// in the browser, whatever the name.
func attachment(name string) string {
	if d := mime.FormatMediaType("attachment", map[string]string{"filename": name}); d != "" {
		return d
	}
	return "attachment"
}

// rename puts an archive's entry under top instead of "artifact".
func rename(entry, top string) string {
	if rest, ok := strings.CutPrefix(entry, "artifact/"); ok {
		return top + "/" + rest
	}
	if entry == "artifact" {
		return top
	}
	return entry
}
