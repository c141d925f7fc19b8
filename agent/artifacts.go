package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest/internal/httpapi"
)

// artifactID reads the {sha256} URL parameter, answering 400 when it is not
// a digest.
func artifactID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := chi.URLParam(r, "sha256")
	if !hexDigest.MatchString(id) {
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("%q is not a sha256 digest: use /artifacts/ and 64 lowercase hex digits", short(id)))
		return "", false
	}
	return id, true
}

// handleGetArtifact serves GET and HEAD. The artifact stays pinned while it
// streams, so eviction cannot delete it under a download.
func (a *Agent) handleGetArtifact(w http.ResponseWriter, r *http.Request) {
	id, ok := artifactID(w, r)
	if !ok {
		return
	}
	release, missing := a.store.pin([]string{id})
	if missing != "" {
		httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("artifact sha256:%s is not on this worker: upload it with PUT /artifacts/%s", id, id))
		return
	}
	defer release()
	f, err := a.store.open(id)
	if err != nil {
		a.api.Error(w, r, fmt.Errorf("read artifact sha256:%s: %w", id, err))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable") // content-addressed
	http.ServeContent(w, r, "", time.Time{}, f)
}

// handlePutArtifact stores an upload under its digest once the digest is
// checked. The digest is computed while the body streams in.
func (a *Agent) handlePutArtifact(w http.ResponseWriter, r *http.Request) {
	id, ok := artifactID(w, r)
	if !ok {
		return
	}
	if r.ContentLength > a.store.limit {
		httpapi.Fail(w, httpapi.TooLarge, fmt.Sprintf("the artifact is %d bytes, more than this worker's --cache-size of %d bytes: raise --cache-size", r.ContentLength, a.store.limit))
		return
	}
	in, err := a.store.create()
	if err != nil {
		a.api.Error(w, r, fmt.Errorf("store artifact sha256:%s: %w", id, err))
		return
	}
	if _, err := io.CopyBuffer(in, r.Body, make([]byte, 1<<20)); err != nil {
		in.abort()
		kind := httpapi.Invalid
		if errors.Is(err, errTooBig) {
			kind = httpapi.TooLarge
		}
		httpapi.Fail(w, kind, fmt.Sprintf("upload of artifact sha256:%s failed, nothing was stored: %v", id, err))
		return
	}
	_, created, release, err := in.commit(id)
	if err != nil {
		if errors.Is(err, errDigest) || errors.Is(err, errBadArchive) {
			httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("artifact sha256:%s was not stored: %v", id, err))
		} else {
			a.api.Error(w, r, fmt.Errorf("artifact sha256:%s was not stored: %w", id, err))
		}
		return
	}
	release()
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		a.log.Info("artifact stored", "id", "sha256:"+id, "size", in.n)
	}
	httpapi.JSON(w, status, map[string]any{"id": "sha256:" + id, "size": in.n, "created": created})
}
