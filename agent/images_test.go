package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// imageEvents builds an image and returns its events, the final image event
// apart, with the output joined.
func imageEvents(t *testing.T, w *wt.Worker, req bettertest.ImageRequest) (names []string, output string, img bettertest.ImageEvent, errMsg string) {
	t.Helper()
	for _, ev := range w.Post(t, "/images", req).All(t) {
		d := decode(t, ev)
		switch v := d.Data.(type) {
		case bettertest.OutputEvent:
			output += v.Text
			if len(names) > 0 && names[len(names)-1] == "output" {
				continue
			}
		case bettertest.ImageEvent:
			img = v
		case bettertest.ErrorEvent:
			errMsg = v.Message
		}
		names = append(names, d.Name)
	}
	return names, output, img, errMsg
}

func TestImagesAreBuiltFromAContextAndCachedByContentAndBase(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	ctxArchive := archive(t,
		entry{"artifact/", ""},
		entry{"artifact/ci/", ""},
		entry{"artifact/ci/Dockerfile", "ARG BASE=" + wt.Image + "\nFROM ${BASE} AS first\nARG GREETING\nCOPY hello.txt /hello.txt\nRUN echo \"$GREETING\" > /greeting\n"},
		entry{"artifact/hello.txt", "hello from the context\n"},
	)
	put(t, w, ctxArchive)
	id := digest(ctxArchive)
	req := bettertest.ImageRequest{Context: "sha256:" + id, Dockerfile: "ci/Dockerfile", BuildArgs: map[string]string{"GREETING": "hi"}, Name: "p/ci"}

	names, output, img, errMsg := imageEvents(t, w, req)
	if errMsg != "" || strings.Join(names, " ") != "uncached output image" {
		t.Fatalf("first build: events %v, error %q\n%s", names, errMsg, output)
	}
	if !strings.Contains(output, "Step 4/6 : COPY hello.txt /hello.txt") {
		t.Errorf("the build's progress is not in its output:\n%s", output)
	}
	key := strings.TrimPrefix(img.Key, "sha256:")
	if img.Tag != "bettertest/built:"+key || img.Cached || len(key) != 64 || !strings.HasPrefix(img.ID, "sha256:") {
		t.Fatalf("image event %+v", img)
	}
	t.Cleanup(func() { removeImage(t, img.Tag) })

	// The same request again: no build.
	names, output, again, _ := imageEvents(t, w, req)
	if strings.Join(names, " ") != "image" || output != "" || again != (bettertest.ImageEvent{Tag: img.Tag, ID: img.ID, Key: img.Key, Cached: true}) {
		t.Fatalf("second build: events %v, image %+v, output %q", names, again, output)
	}

	// A run uses it by its tag.
	if got := outputOf(t, w, bettertest.RunRequest{Image: img.Tag, Command: "cat /hello.txt /greeting"}); got != "hello from the context\nhi\n" {
		t.Errorf("run in the built image printed %q", got)
	}

	// Another build arg is another image.
	req.BuildArgs = map[string]string{"GREETING": "ho"}
	_, _, other, _ := imageEvents(t, w, req)
	t.Cleanup(func() { removeImage(t, other.Tag) })
	if other.Cached || other.Key == img.Key {
		t.Errorf("a changed build arg did not rebuild: %+v", other)
	}
}

func TestImageBuildErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	upload := func(data []byte) string {
		put(t, w, data)
		return digest(data)
	}
	ctxID := upload(archive(t, entry{"artifact/", ""}, entry{"artifact/Dockerfile", "FROM bettertest/no-such-image:1\n"}))
	failID := upload(archive(t, entry{"artifact/", ""}, entry{"artifact/Dockerfile", "FROM " + wt.Image + "\nRUN echo failing; exit 3\n"}))
	fileID := upload(archive(t, entry{"artifact", "FROM x"}))
	for _, tc := range []struct {
		name string
		req  bettertest.ImageRequest
		want string
	}{
		{"base missing", bettertest.ImageRequest{Context: "sha256:" + ctxID},
			"Dockerfile: FROM bettertest/no-such-image:1: the image is not on this worker, and the worker builds without pulling: build it first (an image of an earlier stage), or docker load it there"},
		{"no such dockerfile", bettertest.ImageRequest{Context: "sha256:" + ctxID, Dockerfile: "ci/Dockerfile"},
			"the context has no file ci/Dockerfile: name the Dockerfile's path inside the context (dockerfile=)"},
		{"a file as context", bettertest.ImageRequest{Context: "sha256:" + fileID},
			`"context" is a file: upload the directory that holds the Dockerfile`},
		{"a failing step", bettertest.ImageRequest{Context: "sha256:" + failID},
			"the image's build failed: The command '/bin/sh -c echo failing; exit 3' returned a non-zero code: 3"},
	} {
		_, _, _, got := imageEvents(t, w, tc.req)
		if got != tc.want {
			t.Errorf("%s: error %q\nwant %q", tc.name, got, tc.want)
		}
	}
	missing := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"context":"sha256:` + missing + `"}`, 422, "context: artifact sha256:" + missing + " is not on this worker: upload it first (PUT /artifacts/" + missing + ")"},
		{`{"context":"src"}`, 400, `"context" "src" is not an artifact id: upload the context directory (PUT /artifacts/SHA256) and send "sha256:" and its 64 hex digits`},
		{`{"context":"sha256:` + missing + `","dockerfile":"../Dockerfile"}`, 400, `"dockerfile" "../Dockerfile" must be a clean path inside the context, e.g. "Dockerfile" or "ci/Dockerfile"`},
		{`{"context":"sha256:` + missing + `","build_args":{"1X":"y"}}`, 400, `"build_args" key "1X" is not an ARG name: use letters, digits and _, not starting with a digit`},
		{`{"context":"sha256:` + missing + `","pull":true}`, 400, `request body is not a valid image request: unknown field "pull"; the fields are context, dockerfile, build_args, name`},
	} {
		status, msg := postError(t, w, "/images", tc.body)
		if status != tc.status || msg != tc.want {
			t.Errorf("%s: %d %q\nwant %d %q", tc.body, status, msg, tc.status, tc.want)
		}
	}
}

// postError posts body to path and returns the status and error message.
func postError(t *testing.T, w *wt.Worker, path, body string) (int, string) {
	t.Helper()
	resp, err := w.Do(context.Background(), http.MethodPost, path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bettertest.APIError
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("%s: %d, not a JSON error: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, got.Error
}

func removeImage(t *testing.T, tag string) {
	if _, err := wt.Docker(t).ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Errorf("remove %s: %v", tag, err)
	}
}
