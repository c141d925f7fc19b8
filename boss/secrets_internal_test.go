package boss

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bettertest/bettertest"
)

func TestSecretFlags(t *testing.T) {
	dir := t.TempDir()
	good, loose := filepath.Join(dir, "good"), filepath.Join(dir, "loose")
	os.WriteFile(good, []byte("  hunter2\n"), 0o600)
	os.WriteFile(loose, []byte("hunter2"), 0o644)
	if name, value, err := ParseSecret("deploy_key=" + good); name != "deploy_key" || string(value) != "hunter2" || err != nil {
		t.Errorf("ParseSecret: %q %q %v", name, value, err)
	}
	for arg, want := range map[string]string{
		"deploy_key":          `--secret "deploy_key" is not NAME=FILE: pass the secret's name and a file (mode 0600) holding it, e.g. --secret deploy_key=/etc/bettertest/deploy_key`,
		"a b=" + good:         `--secret a b=` + good + `: "a b" cannot be a secret's name: use letters, digits, '_', '.' and '-'`,
		"deploy_key=" + loose: `--secret deploy_key: token file ` + loose + ` is readable by group or others (mode 0644): run chmod 600 ` + loose,
	} {
		if _, _, err := ParseSecret(arg); err == nil || err.Error() != want {
			t.Errorf("ParseSecret(%q): %v\nwant %s", arg, err, want)
		}
	}
	for arg, want := range map[string]PipedefConfig{
		"ci/p.py":                     {Path: "ci/p.py"},
		"ci/a,b.py":                   {Path: "ci/a,b.py"},
		"ci/p.py,secrets=deploy_key":  {Path: "ci/p.py", Secrets: []string{"deploy_key"}},
		"ci/p.py,secrets=a.b+c-d+e_f": {Path: "ci/p.py", Secrets: []string{"a.b", "c-d", "e_f"}},
	} {
		if got, err := ParsePipedef(arg); !reflect.DeepEqual(got, want) || err != nil {
			t.Errorf("ParsePipedef(%q) = %+v, %v; want %+v", arg, got, err, want)
		}
	}
	if _, err := ParsePipedef("p.py,secrets=a;b"); err == nil || err.Error() != `--pipedef p.py: secrets=a;b: "a;b" is not a secret's name: list the names of --secret flags, separated by "+", e.g. secrets=deploy_key+registry` {
		t.Errorf("ParsePipedef with ';': %v", err)
	}
	rc, err := ParseRepo("app=https://example.com/o/app.git,pipedef=ci.py,secrets=a+b,branch=main")
	if err != nil || !reflect.DeepEqual(rc.Secrets, []string{"a", "b"}) || !reflect.DeepEqual(rc.Branches, []string{"main"}) {
		t.Errorf("ParseRepo: %+v %v", rc, err)
	}
	script := filepath.Join(dir, "p.py")
	os.WriteFile(script, nil, 0o644)
	_, err = newBoss(Config{Pipedefs: []PipedefConfig{{Path: script, Secrets: []string{"registry"}}}, Secrets: map[string][]byte{"b": {1}, "a": {1}}})
	if want := `--pipedef ` + script + `: pipeline p asks for the secret "registry", which no --secret gives (given: a, b): pass --secret registry=FILE`; err == nil || err.Error() != want {
		t.Errorf("newBoss with an unknown secret: %v\nwant %s", err, want)
	}
}

func TestSecretsDirHoldsThePipelinesSecretsOnly(t *testing.T) {
	b := &Boss{cfg: Config{Secrets: map[string][]byte{"deploy_key": []byte("k1"), "registry": []byte("p2"), "other": []byte("x")}},
		secretNames: map[string][]string{"app": {"deploy_key", "registry"}}}
	runDir := t.TempDir()
	dir, err := b.writeSecretsDir(runDir, "app")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, _ := e.Info()
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		files[e.Name()] = info.Mode().String() + " " + string(data)
	}
	info, _ := os.Stat(dir)
	if want := map[string]string{"deploy_key": "-r-------- k1", "registry": "-r-------- p2"}; !reflect.DeepEqual(files, want) || info.Mode().Perm() != 0o700 || filepath.Dir(dir) != runDir {
		t.Errorf("secrets dir %s (%s): %v, want %v", dir, info.Mode(), files, want)
	}
	if dir, err := b.writeSecretsDir(runDir, "lint"); dir != "" || err != nil {
		t.Errorf("a pipeline without secrets got %q %v", dir, err)
	}
}

func TestForkPullRequestsGetNoSecrets(t *testing.T) {
	rc := RepoConfig{Name: "app", URL: "https://github.com/o/app.git", Pipedef: "ci.py", Secrets: []string{"deploy_key"}}
	every, _ := parseBranchFilter(nil)
	b := &Boss{cfg: Config{Secrets: map[string][]byte{"deploy_key": []byte("k1")}}, log: slog.Default(),
		pipelines:   []bettertest.Pipeline{{Name: "app"}},
		repos:       map[string]*repo{"app": {cfg: rc, branches: every}},
		secretNames: map[string][]string{"app": rc.Secrets}}
	b.eng = newEngine(b)
	go b.eng.run()
	defer close(b.eng.quit)
	for head, fork := range map[string]bool{`{"full_name": "o/app"}`: false, `{"full_name": "eve/app"}`: true, `null`: true} {
		var ev pullRequestEvent
		payload := `{"action": "opened", "number": 5, "repository": {"full_name": "o/app"},
			"pull_request": {"head": {"sha": "abc", "repo": ` + head + `}, "base": {"ref": "main"}}}`
		if err := json.Unmarshal([]byte(payload), &ev); err != nil {
			t.Fatal(err)
		}
		runs := b.pullRequestRuns(ev)
		if len(runs) != 1 || runs[0].commit.Fork != fork {
			t.Fatalf("head repo %s: runs %+v, want one with Fork %v", head, runs, fork)
		}
		r := &activeRun{commit: &runs[0].commit, run: bettertest.Run{Pipeline: "app"}}
		dir, err := b.runSecretsDir(r, t.TempDir())
		if err != nil || (dir == "") != fork || r.secretsDir != dir {
			t.Errorf("head repo %s: secrets dir %q %v", head, dir, err)
		}
		b.do(func(e *engine) { e.removeSecrets(r) })
		if _, err := os.Stat(dir); dir != "" && !os.IsNotExist(err) {
			t.Errorf("the run's secrets dir is still there: %v", err)
		}
	}
}
