package boss_test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/bettertest/bettertest/boss"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// BenchmarkAuthenticatedRuns measures GET /api/runs on a boss with users,
// sent with a session cookie and with an API token, against the same
// request on a boss without users (target: p99 at most 1.2 × the peer's).
// The requests take turns, so both bosses see the same noise; the history
// is empty, so the check's share of the answer is as large as it gets.
// Quick mode: 50 requests of each instead of 2000.
func BenchmarkAuthenticatedRuns(b *testing.B) {
	dir := b.TempDir()
	usersFile := filepath.Join(dir, "users.json")
	if err := boss.AddUser(usersFile, "alice", boss.RoleViewer, []byte("alice-password")); err != nil {
		b.Fatal(err)
	}
	token, err := boss.AddToken(usersFile, "alice")
	if err != nil {
		b.Fatal(err)
	}
	worker := wt.Start(b, bin, wt.Options{})
	noopPath := pipedef(b, dir, "noop", noop)
	open := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{noopPath}, Workers: []*wt.Worker{worker}})
	closed := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{noopPath}, Workers: []*wt.Worker{worker}, Args: []string{"--users-file", usersFile}})
	cookie := login(b, closed.URL, "alice", "alice-password")
	n := scale(2000, 50)
	for range b.N {
		var none, session, bearer []time.Duration
		kinds := []func(){
			func() { none = append(none, timeGet(b, open.URL)) },
			func() { session = append(session, timeGet(b, closed.URL, "Cookie", boss.SessionCookie+"="+cookie)) },
			func() { bearer = append(bearer, timeGet(b, closed.URL, "Authorization", "Bearer "+token)) },
		}
		for i := range n {
			for k := range kinds { // each goes first in turn: none gains from its place
				kinds[(i+k)%len(kinds)]()
			}
		}
		p50, p99 := percentiles(none)
		s50, s99 := percentiles(session)
		t50, t99 := percentiles(bearer)
		b.ReportMetric(s99/p99, "ratio-p99-session")
		b.ReportMetric(t99/p99, "ratio-p99-token")
		b.Logf("GET /api/runs, %d requests each: without users p50 %.3f ms p99 %.3f ms; with a session p50 %.3f ms p99 %.3f ms (%.2fx); "+
			"with a token p50 %.3f ms p99 %.3f ms (%.2fx) (target p99 <= 1.2x)", n, p50, p99, s50, s99, s99/p99, t50, t99, t99/p99)
	}
}

// timeGet times GET /api/runs to the end of its answer; header is pairs of name and value.
func timeGet(b *testing.B, base string, header ...string) time.Duration {
	start := time.Now()
	if a := send(b, base, route{"GET", "/api/runs", ""}, header...); a.Status != http.StatusOK || a.Body != "[]\n" {
		b.Fatalf("GET %s/api/runs: %+v", base, a)
	}
	return time.Since(start)
}
