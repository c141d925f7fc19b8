package boss

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// RepoConfig is a pipeline whose pipedef lives in a git repository:
// --repo NAME=GIT_URL,pipedef=PATH_IN_REPO[,branch=PATTERN]...[,secrets=A+B].
type RepoConfig struct {
	Name    string
	URL     string
	Pipedef string // relative to the repository's root
	// Branches are GitHub filter patterns (branch=, repeatable): pushes to the
	// branches they select, and pull requests into them, run the pipeline.
	// None: every branch.
	Branches []string
	Secrets  []string // the names of the secrets its pipedef is given (secrets=A+B)
}

// ParseRepo parses a --repo value.
func ParseRepo(s string) (RepoConfig, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return RepoConfig{}, fmt.Errorf("--repo %q is not NAME=GIT_URL,pipedef=PATH[,branch=PATTERN]", s)
	}
	parts := strings.Split(rest, ",")
	rc := RepoConfig{Name: name, URL: parts[0]}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "pipedef":
			rc.Pipedef = v
		case "branch":
			rc.Branches = append(rc.Branches, v)
		case "secrets":
			names, err := parseSecretNames("--repo "+name, v)
			if err != nil {
				return RepoConfig{}, err
			}
			rc.Secrets = names
		default:
			return RepoConfig{}, fmt.Errorf("--repo %s: unknown setting %q: the settings are pipedef, branch and secrets", name, k)
		}
	}
	if rc.URL == "" || rc.Pipedef == "" || path.IsAbs(rc.Pipedef) || strings.HasPrefix(path.Clean(rc.Pipedef), "..") {
		return RepoConfig{}, fmt.Errorf("--repo %s: give the git URL and pipedef=PATH, a path inside the repository, e.g. --repo app=https://github.com/o/app.git,pipedef=ci/pipeline.py", name)
	}
	if _, err := parseBranchFilter(rc.Branches); err != nil {
		return RepoConfig{}, fmt.Errorf("--repo %s: %w", name, err)
	}
	return rc, nil
}

// fullName is the repository's owner/name, from the last two parts of its URL.
func (rc RepoConfig) fullName() string {
	u := rc.URL
	if parsed, err := url.Parse(u); err == nil && parsed.Path != "" {
		u = parsed.Path
	} else if _, after, ok := strings.Cut(u, ":"); ok { // git@github.com:owner/repo.git
		u = after
	}
	parts := strings.Split(strings.Trim(strings.TrimSuffix(u, ".git"), "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

// repo keeps one bare clone of a repository under the data dir, fetched
// before each run; each run gets a worktree of its commit.
type repo struct {
	cfg      RepoConfig
	branches branchFilter // which branches run it
	bare     string       // DATA/repos/NAME.git
	work     string       // DATA/work: one worktree per run
	mu       sync.Mutex
}

// checkout is a run's worktree.
type checkout struct {
	Dir, Commit, Ref, Author string
}

func (rp *repo) git(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0") // never wait for a password nobody will type
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// prepare fetches the repository (cloning it the first time) and makes a
// worktree for a run of commit, or of the default branch's head when
// commit is "". ref is the ref to fetch besides the branches (a pull
// request's, say).
func (rp *repo) prepare(ctx context.Context, runID int64, commit, ref string) (checkout, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if _, err := os.Stat(rp.bare); errors.Is(err, os.ErrNotExist) {
		tmp := rp.bare + ".cloning"
		os.RemoveAll(tmp)
		if _, err := rp.git(ctx, "clone", "--bare", "--quiet", rp.cfg.URL, tmp); err != nil {
			return checkout{}, fmt.Errorf("clone %s: %w", rp.cfg.URL, err)
		}
		if err := os.Rename(tmp, rp.bare); err != nil {
			return checkout{}, err
		}
	}
	refspecs := []string{"+refs/heads/*:refs/heads/*"}
	if strings.HasPrefix(ref, "refs/") && !strings.HasPrefix(ref, "refs/heads/") {
		refspecs = append(refspecs, "+"+ref+":"+ref)
	}
	if _, err := rp.git(ctx, append([]string{"-C", rp.bare, "fetch", "--quiet", "--prune", rp.cfg.URL}, refspecs...)...); err != nil {
		return checkout{}, fmt.Errorf("fetch %s: %w", rp.cfg.URL, err)
	}
	co := checkout{Commit: commit, Ref: ref}
	if co.Commit == "" {
		head, err := rp.git(ctx, "-C", rp.bare, "symbolic-ref", "HEAD")
		if err != nil {
			return co, err
		}
		co.Ref = head
		if co.Commit, err = rp.git(ctx, "-C", rp.bare, "rev-parse", head); err != nil {
			return co, err
		}
	}
	if _, err := rp.git(ctx, "-C", rp.bare, "cat-file", "-e", co.Commit+"^{commit}"); err != nil {
		return co, fmt.Errorf("commit %s is not in %s, even after a fetch of its branches: push it there, or point the webhook at this repository", co.Commit, rp.cfg.URL)
	}
	author, err := rp.git(ctx, "-C", rp.bare, "log", "-1", "--format=%an", co.Commit)
	if err != nil {
		return co, err
	}
	co.Author = author
	co.Dir = filepath.Join(rp.work, fmt.Sprintf("%s-%d", rp.cfg.Name, runID))
	os.RemoveAll(co.Dir)
	if _, err := rp.git(ctx, "-C", rp.bare, "worktree", "add", "--detach", "--quiet", co.Dir, co.Commit); err != nil {
		return co, fmt.Errorf("check out %s: %w", co.Commit, err)
	}
	return co, nil
}

// release removes a run's worktree.
func (rp *repo) release(dir string) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	_, err := rp.git(context.Background(), "-C", rp.bare, "worktree", "remove", "--force", dir)
	return err
}

// prune forgets worktrees an earlier boss left.
func (rp *repo) prune() error {
	if _, err := os.Stat(rp.bare); err != nil {
		return nil
	}
	_, err := rp.git(context.Background(), "-C", rp.bare, "worktree", "prune")
	return err
}
