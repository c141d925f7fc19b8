package boss

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
)

// GitHubConfig connects the boss to GitHub; every part is optional.
type GitHubConfig struct {
	WebhookSecretFile string // enables POST /hooks/github
	TokenFile         string // enables commit statuses
	API               string // the REST API's base URL
	PublicURL         string // where people reach the UI, for the statuses' links
	// TrustedAuthors are GitHub logins whose pull requests from forks run
	// without approval, beside the repository's owners, members and collaborators.
	TrustedAuthors []string
}

// commitInfo is what a run knows about the commit it tests.
type commitInfo struct {
	Commit, Ref, Author, URL string
	FullName                 string // owner/repo, for the statuses
	// Fork: a pull request whose head is in another repository. Its code is
	// anyone's: it waits for approval unless its author is trusted, and it
	// never gets the pipeline's secrets.
	Fork    bool
	Trusted bool // its author is trusted: it runs without approval
}

// pushEvent and pullRequestEvent are the parts of GitHub's webhook payloads
// the boss reads (docs.github.com: "Webhook events and payloads").
type pushEvent struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	HeadCommit *struct {
		ID     string `json:"id"`
		URL    string `json:"url"`
		Author struct {
			Name string `json:"name"`
		} `json:"author"`
	} `json:"head_commit"`
	Repository ghRepository `json:"repository"`
}

type pullRequestEvent struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		Head struct {
			SHA  string `json:"sha"`
			Ref  string `json:"ref"`
			Repo *struct {
				FullName string `json:"full_name"`
			} `json:"repo"` // null when the fork was deleted
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
		User struct {
			Login string `json:"login"`
		} `json:"user"`
		AuthorAssociation string `json:"author_association"`
	} `json:"pull_request"`
	Repository ghRepository `json:"repository"`
}

type ghRepository struct {
	FullName string `json:"full_name"`
	HTMLURL  string `json:"html_url"`
	CloneURL string `json:"clone_url"`
	GitURL   string `json:"git_url"`
	SSHURL   string `json:"ssh_url"`
}

// matches says whether a payload's repository is the one rc names.
func (g ghRepository) matches(rc RepoConfig) bool {
	norm := func(u string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")) }
	for _, u := range []string{g.CloneURL, g.GitURL, g.SSHURL, g.HTMLURL} {
		if u != "" && norm(u) == norm(rc.URL) {
			return true
		}
	}
	return g.FullName != "" && strings.EqualFold(g.FullName, rc.fullName())
}

// maxPayload is GitHub's own cap on a webhook payload.
const maxPayload = 25 << 20

// handleGitHubHook starts the runs a push or a pull request asks for. Every
// request must carry the secret's HMAC; a delivery seen before starts nothing.
func (b *Boss) handleGitHubHook(w http.ResponseWriter, r *http.Request) {
	if b.hookSecret == nil {
		httpapi.Fail(w, httpapi.NotFound, "webhooks are off: start the boss with --github-webhook-secret-file FILE")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPayload))
	if err != nil {
		httpapi.Fail(w, httpapi.TooLarge, "the payload is larger than GitHub's 25 MB")
		return
	}
	if !validSignature(b.hookSecret, body, r.Header.Get("X-Hub-Signature-256")) {
		httpapi.Fail(w, httpapi.Unauthenticated, "missing or wrong X-Hub-Signature-256: set the webhook's secret to the content of --github-webhook-secret-file")
		return
	}
	event, delivery := r.Header.Get("X-GitHub-Event"), r.Header.Get("X-GitHub-Delivery")
	var runs []commitRun
	switch event {
	case "ping":
		httpapi.JSON(w, http.StatusOK, map[string]string{"pong": delivery})
		return
	case "push":
		var p pushEvent
		if err := json.Unmarshal(body, &p); err != nil {
			httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("the push payload is not JSON GitHub would send: %v", err))
			return
		}
		runs = b.pushRuns(p)
	case "pull_request":
		var p pullRequestEvent
		if err := json.Unmarshal(body, &p); err != nil {
			httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("the pull_request payload is not JSON GitHub would send: %v", err))
			return
		}
		runs = b.pullRequestRuns(p)
	default:
		w.WriteHeader(http.StatusNoContent) // an event this boss does not act on
		return
	}
	if delivery == "" {
		httpapi.Fail(w, httpapi.Invalid, "missing X-GitHub-Delivery: GitHub sends one with every delivery")
		return
	}
	fresh, err := b.store.newDelivery(delivery)
	if err != nil {
		b.api().Error(w, r, fmt.Errorf("record webhook delivery %s: %w", delivery, err))
		return
	}
	started := []int64{}
	if !fresh {
		b.log.Info("webhook redelivered: no new run", "delivery", delivery, "event", event)
		httpapi.JSON(w, http.StatusOK, map[string]any{"runs": started, "redelivery": true})
		return
	}
	for _, cr := range runs {
		run, err := b.triggerCommit(cr.pipeline, event, &cr.commit)
		if err != nil {
			if len(started) == 0 {
				// Nothing of it ran: GitHub's redelivery may run it all once the boss can.
				if ferr := b.store.forgetDelivery(delivery); ferr != nil {
					b.log.Error("history", "delivery", delivery, "err", ferr)
				}
			}
			b.api().Error(w, r, fmt.Errorf("start a run of %s for webhook delivery %s: %w", cr.pipeline, delivery, err))
			return
		}
		started = append(started, run.ID)
	}
	b.log.Info("webhook", "delivery", delivery, "event", event, "runs", started)
	httpapi.JSON(w, http.StatusAccepted, map[string]any{"runs": started})
}

func validSignature(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	sig, err := hex.DecodeString(got)
	if !ok || err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil)) // constant time
}

type commitRun struct {
	pipeline string
	commit   commitInfo
}

func (b *Boss) pushRuns(p pushEvent) []commitRun {
	branch, isBranch := strings.CutPrefix(p.Ref, "refs/heads/")
	if p.Deleted || !isBranch || strings.Trim(p.After, "0") == "" {
		return nil
	}
	ci := commitInfo{Commit: p.After, Ref: p.Ref, FullName: p.Repository.FullName}
	if p.HeadCommit != nil {
		ci.Author, ci.URL = p.HeadCommit.Author.Name, p.HeadCommit.URL
	}
	return b.repoRuns(p.Repository, branch, ci)
}

func (b *Boss) pullRequestRuns(p pullRequestEvent) []commitRun {
	switch p.Action {
	case "opened", "synchronize", "reopened":
	default:
		return nil
	}
	pr := p.PullRequest
	ci := commitInfo{Commit: pr.Head.SHA, Ref: fmt.Sprintf("refs/pull/%d/head", p.Number), Author: pr.User.Login,
		FullName: p.Repository.FullName}
	ci.Fork = pr.Head.Repo == nil || !strings.EqualFold(pr.Head.Repo.FullName, p.Repository.FullName)
	ci.Trusted = trustedAssociation[pr.AuthorAssociation] || slices.Contains(b.cfg.GitHub.TrustedAuthors, pr.User.Login)
	if p.Repository.HTMLURL != "" {
		ci.URL = p.Repository.HTMLURL + "/commit/" + pr.Head.SHA
	}
	// A pull request runs the pipelines of the branch it would merge into.
	return b.repoRuns(p.Repository, pr.Base.Ref, ci)
}

func (b *Boss) repoRuns(gr ghRepository, branch string, ci commitInfo) []commitRun {
	var out []commitRun
	for _, p := range b.pipelines {
		rp := b.repos[p.Name]
		if rp == nil || !gr.matches(rp.cfg) {
			continue
		}
		if rp.branches.match(branch) {
			out = append(out, commitRun{pipeline: p.Name, commit: ci})
		}
	}
	return out
}

// trustedAssociation are the authors GitHub says may push to the repository
// anyway (author_association in the payload): their forks run at once.
var trustedAssociation = map[string]bool{"OWNER": true, "MEMBER": true, "COLLABORATOR": true}

// statusClient posts commit statuses to GitHub's REST API.
type statusClient struct {
	api, token, public string
	client             *http.Client
}

// status is one commit status to post.
type status struct {
	FullName    string `json:"-"`
	Commit      string `json:"-"`
	State       string `json:"state"` // pending, success, failure, error
	TargetURL   string `json:"target_url"`
	Description string `json:"description"`
	Context     string `json:"context"`
}

// statusOf is the commit status that says where a run stands.
func (c *statusClient) statusOf(r bettertest.Run, ci *commitInfo) status {
	s := status{FullName: ci.FullName, Commit: ci.Commit, Context: "bettertest/" + r.Pipeline,
		TargetURL: fmt.Sprintf("%s/runs/%d", strings.TrimSuffix(c.public, "/"), r.ID)}
	d := time.Duration(r.FinishedMS-r.StartedMS) * time.Millisecond
	switch r.Status {
	case bettertest.StatusAwaitingApproval:
		s.State, s.Description = "pending", "awaiting approval"
	case bettertest.StatusQueued, bettertest.StatusRunning:
		s.State, s.Description = "pending", "running"
		if r.Worker != "" {
			s.Description = "running on " + r.Worker
		}
	case bettertest.StatusPassed:
		s.State, s.Description = "success", fmt.Sprintf("passed in %s", d.Round(100*time.Millisecond))
	case bettertest.StatusFailed:
		s.State, s.Description = "failure", "failed: "+r.Error
		if r.ExitCode == nil { // it never ran to an end: its tests said nothing
			s.State = "error"
		}
	default:
		s.State, s.Description = "error", r.Status+": "+r.Error
	}
	s.Description = cutDescription(s.Description)
	return s
}

// statusBackoff is the first wait before posting a status again; it doubles
// with each try, up to statusTries tries.
const (
	statusBackoff = 500 * time.Millisecond
	statusTries   = 6
)

// postStatuses posts statuses in order until the channel is closed. The boss
// waits for it when it stops, after its runs have ended and said so.
func (b *Boss) postStatuses(statuses <-chan status) {
	b.postWG.Add(1)
	go func() {
		defer b.postWG.Done()
		b.postAll(b.posting, statuses)
	}()
}

// postInterrupted posts error for the runs of commits that the last boss
// left unfinished: GitHub was told they were pending.
func (b *Boss) postInterrupted(ids []int64) {
	if b.github == nil || len(ids) == 0 {
		return
	}
	statuses := make(chan status, len(ids))
	defer close(statuses)
	for _, id := range ids {
		r, err := b.store.run(context.Background(), id)
		rp := b.repos[r.Pipeline]
		if err != nil || rp == nil || r.Commit == "" {
			continue
		}
		// The statuses of a pipeline go to its repository: a webhook starts
		// a run only for the repository it names.
		statuses <- b.github.statusOf(r, &commitInfo{Commit: r.Commit, FullName: rp.cfg.fullName()})
	}
	b.postStatuses(statuses)
}

// waitForStatuses lets the statuses still being posted finish, for at most
// statusDrain, when the boss stops.
func (b *Boss) waitForStatuses(cancel context.CancelFunc) {
	posted := make(chan struct{})
	go func() {
		b.postWG.Wait()
		close(posted)
	}()
	select {
	case <-posted:
	case <-time.After(statusDrain):
		b.log.Warn("commit statuses not posted yet: giving up on them", "after", statusDrain)
		cancel()
		<-posted
	}
}

// statusDrain is how long a stopping boss waits for GitHub to take the
// statuses of the runs it ended.
const statusDrain = 10 * time.Second

// postAll posts statuses in order, each retried with backoff until it is
// taken or ctx ends. A status that cannot be posted is logged; it never
// changes the run.
func (b *Boss) postAll(ctx context.Context, statuses <-chan status) {
	for s := range statuses {
		wait := statusBackoff
		for try := 1; ; try++ {
			err := b.github.post(ctx, s)
			if err == nil {
				break
			}
			if try == statusTries || ctx.Err() != nil {
				b.log.Error("commit status not posted: giving up", "commit", s.Commit, "state", s.State, "tries", try, "err", err)
				break
			}
			b.log.Warn("commit status not posted: will retry", "commit", s.Commit, "state", s.State, "try", try, "in", wait, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait *= 2
		}
	}
}

func (c *statusClient) post(ctx context.Context, s status) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	u := fmt.Sprintf("%s/repos/%s/statuses/%s", strings.TrimSuffix(c.api, "/"), s.FullName, s.Commit)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}

// cutDescription shortens d to GitHub's limit of 140 characters, counted in
// characters: a cut in bytes could split one and GitHub would show U+FFFD.
func cutDescription(d string) string {
	const limit = 140
	if utf8.RuneCountInString(d) <= limit {
		return d
	}
	return string([]rune(d)[:limit-1]) + "…"
}
