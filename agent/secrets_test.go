package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

const apiToken = "tok-5d1e-b8"

// printSecrets prints a file secret whole, split across two writes with a
// pause between them, an env secret on stderr and a base64 secret as it is.
const printSecrets = `S=$(cat /run/secrets/deploy)
echo "whole: $S"
printf 'split: %s' "${S%???}"; sleep 0.1; printf '%s\n' "${S#"${S%???}"}"
echo "env: $TOKEN" >&2
echo "b64: $(cat /run/secrets/b64)"
stat -c '%a %U' /run/secrets/deploy
echo x 2>/dev/null > /run/secrets/deploy || echo read-only`

func secretsRequest() bettertest.RunRequest {
	req := run(printSecrets)
	req.Secrets = []bettertest.Secret{
		{Path: "/run/secrets/deploy", Value: wt.SecretKey},
		{Env: "TOKEN", Value: apiToken},
		{Path: "/run/secrets/b64", Value: wt.SecretB64},
	}
	return req
}

func TestSecretsReachTheCommandAndAreMaskedInItsOutput(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	evs := w.Run(t, secretsRequest()).All(t)
	if got, want := joined(t, evs, "stdout"), "whole: ***\nsplit: ***\nb64: ***\n400 root\nread-only\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := joined(t, evs, "stderr"), "env: ***\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	for _, ev := range evs {
		for _, v := range []string{wt.SecretKey, apiToken, wt.SecretB64, wt.SecretKey[:len(wt.SecretKey)-3]} {
			if strings.Contains(ev.Data, v) {
				t.Errorf("event %s %s shows (part of) a secret", ev.Name, ev.Data)
			}
		}
	}
	// The run's secret files are gone with it.
	left, err := os.ReadDir(filepath.Join(w.DataDir, "secrets"))
	if err != nil || len(left) != 0 {
		t.Errorf("secret files left after the run: %v %v", left, err)
	}
	if strings.Contains(w.Stderr(), wt.SecretKey) || strings.Contains(w.Stderr(), apiToken) {
		t.Errorf("the worker's log shows a secret:\n%s", w.Stderr())
	}
}

func TestBuildWithSecretsCachesByWhereTheyGoNotTheirValues(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	build := func(value string) []decoded {
		req := run(`test -s /run/secrets/key && mkdir /out && echo built > /out/x`)
		req.Cache, req.Name, req.Outputs = true, "p/secret-build", []string{"/out"}
		req.Secrets = []bettertest.Secret{{Path: "/run/secrets/key", Value: value}}
		return normalize(t, w.Run(t, req).All(t))
	}
	first := build("one")
	if first[0] != (decoded{"uncached", bettertest.UncachedEvent{Reason: "first run"}}) {
		t.Fatalf("first build: %+v", first)
	}
	// Another value (a rotated key) finds the same build.
	if again := build("two"); again[0].Name != "cached" {
		t.Fatalf("build with a rotated secret: %+v, want cached", again)
	}
}

func TestBadSecretsGetAClearError(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	many := make([]bettertest.Secret, 33)
	for i := range many {
		many[i] = bettertest.Secret{Env: "S" + strings.Repeat("X", i), Value: "v"}
	}
	for _, c := range []struct {
		name    string
		secrets []bettertest.Secret
		inputs  map[string]string
		outputs []string
		env     map[string]string
		msg     string
	}{
		{"neither", []bettertest.Secret{{Value: "v"}}, nil, nil, nil, `"secrets"[0] needs exactly one of "path" (a file in the container) and "env" (an environment variable)`},
		{"both", []bettertest.Secret{{Path: "/s", Env: "S", Value: "v"}}, nil, nil, nil, `"secrets"[0] needs exactly one of "path" (a file in the container) and "env" (an environment variable)`},
		{"empty value", []bettertest.Secret{{Env: "S"}}, nil, nil, nil, `"secrets"[0] (env:S) has an empty "value": an empty secret cannot be masked; leave it out`},
		{"too big", []bettertest.Secret{{Env: "S", Value: strings.Repeat("v", 64<<10+1)}}, nil, nil, nil, `"secrets"[0] (env:S) has a value of 65537 bytes: at most 65536; pass a key or a password, not data (data goes in "inputs")`},
		{"too many", many, nil, nil, nil, `"secrets" has 33 entries: a run may have at most 32`},
		{"twice", []bettertest.Secret{{Env: "S", Value: "a"}, {Env: "S", Value: "b"}}, nil, nil, nil, `"secrets"[1]: env:S is given twice: give each file or variable one secret`},
		{"bad env name", []bettertest.Secret{{Env: "1A", Value: "v"}}, nil, nil, nil, `"secrets"[0]: "env" "1A" is not a variable name: use letters, digits and _, not starting with a digit`},
		{"env also in env", []bettertest.Secret{{Env: "A", Value: "v"}}, nil, nil, map[string]string{"A": "x"}, `"secrets"[0]: the variable A is also in "env": set it in one place`},
		{"relative path", []bettertest.Secret{{Path: "run/s", Value: "v"}}, nil, nil, nil, `"secrets" path "run/s" must be a clean absolute path in the container other than "/", e.g. "/src"`},
		{"inside an input", []bettertest.Secret{{Path: "/src/key", Value: "v"}}, map[string]string{"/src": "sha256:" + zeros}, nil, nil, `"secrets"[0]: the secret file /src/key overlaps the input, output or results path /src: put it elsewhere, e.g. under /run/secrets`},
		{"over an output", []bettertest.Secret{{Path: "/out", Value: "v"}}, nil, []string{"/out/bin"}, nil, `"secrets"[0]: the secret file /out overlaps the input, output or results path /out/bin: put it elsewhere, e.g. under /run/secrets`},
	} {
		req := run("true")
		req.Secrets, req.Inputs, req.Outputs, req.Env = c.secrets, c.inputs, c.outputs, c.env
		body, _ := json.Marshal(req)
		resp, err := w.Do(context.Background(), "POST", "/run", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		var got bettertest.APIError
		derr := json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != 400 || derr != nil || got.Error != c.msg {
			t.Errorf("%s: got %d %q (%v), want 400 %q", c.name, resp.StatusCode, got.Error, derr, c.msg)
		}
	}
}
