package boss_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/bettertest/bettertest/boss"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// In real Chromium: a visitor is sent to log in, logs in, runs a pipeline
// and logs out; the session cookie cannot be read by scripts, is never sent
// by another site, and is gone once logged out.
func TestBrowserLogsInRunsAndLogsOut(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.json")
	if err := boss.AddUser(usersFile, "alice", boss.RoleOperator, []byte("alice-password")); err != nil {
		t.Fatal(err)
	}
	worker := wt.Start(t, bin, wt.Options{})
	b := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "noop", noop)}, Workers: []*wt.Worker{worker}, Args: []string{"--users-file", usersFile}})
	tab := newTab(t, b.URL)

	tab.loads(chromedp.Navigate(b.URL + "/"))
	tab.equal(`location.pathname + location.search + " " + document.title`, "/login?next=%2F Log in · bettertest")
	tab.equal(`document.scripts.length`, 0)
	tab.logIn("/", "alice", "alice-password")
	tab.equal(`location.pathname + " " + document.querySelector("#nav .who").textContent`, "/ alice")
	tab.equal(`document.cookie`, "")
	session := tab.cookie()
	want := network.Cookie{Name: boss.SessionCookie, Value: session.Value, Domain: "127.0.0.1", Path: "/", HTTPOnly: true, Secure: false, SameSite: network.CookieSameSiteStrict}
	got := *session
	got.Expires, got.Size, got.Priority, got.SourceScheme, got.SourcePort = 0, 0, "", "", 0
	if got != want {
		t.Errorf("the session cookie:\n got %+v\nwant %+v", got, want)
	}
	if life := time.Until(time.Unix(int64(session.Expires), 0)); life < boss.SessionLife-time.Minute || life > boss.SessionLife {
		t.Errorf("the session cookie lasts %v, want %v", life, boss.SessionLife)
	}

	tab.press("r")
	tab.waitFor("run #1 passed", `location.pathname === "/runs/1" && `+jsRunStatus+` === "✓ passed"`)

	// A session ended elsewhere (here: logged out by another program)
	// sends the page to log in again, by itself.
	tab.loads(chromedp.Func(func(context.Context, *chromedp.Target) error {
		check(t, "log out from elsewhere", send(t, b.URL, route{"POST", "/logout", ""}, "Cookie", boss.SessionCookie+"="+session.Value),
			answer{Status: http.StatusSeeOther, Location: "/login", SetCookie: "bettertest_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"})
		return nil
	}))
	tab.equal(`location.pathname + location.search`, "/login?next=%2Fruns%2F1")
	tab.logIn("/runs/1", "alice", "alice-password")
	tab.equal(jsRunStatus, "✓ passed")
	session = tab.cookie()

	tab.loads(chromedp.Click(chromedp.CSS(`#nav form.user button`)))
	tab.equal(`location.pathname + location.search + " " + document.title`, "/login Log in · bettertest")
	if c := tab.cookie(); c != nil {
		t.Errorf("the session cookie outlived the logout: %+v", c)
	}
	tab.loads(chromedp.Navigate(b.URL + "/runs/1"))
	tab.equal(`location.pathname + location.search`, "/login?next=%2Fruns%2F1")
	req, _ := http.NewRequest("GET", b.URL+"/api/runs", nil)
	req.AddCookie(&http.Cookie{Name: boss.SessionCookie, Value: session.Value})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the cookie after logging out: %s", resp.Status)
	}
}

// logIn fills in the login form shown and sends it, and returns once the
// page at path it leads to is live.
func (tb *tab) logIn(path, name, password string) {
	tb.t.Helper()
	tb.live(path, chromedp.Steps(
		chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), name),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Submit(chromedp.CSS(`form.login`)),
	))
}

// loads does action and returns once the page it leads to has loaded.
func (tb *tab) loads(action chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	loaded := make(chan struct{}, 1)
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventLoadEventFired); ok {
			select {
			case loaded <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		tb.t.Fatal(err)
	}
	if err := chromedp.Do(ctx, action); err != nil {
		tb.t.Fatalf("%v\n%s", err, tb.describe())
	}
	select {
	case <-loaded:
	case <-ctx.Done():
		tb.t.Fatalf("no page loaded in %v: %s", tb.bound, tb.describe())
	}
}

// cookie is the boss's session cookie in the browser, or nil.
func (tb *tab) cookie() *network.Cookie {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	res, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.base}})
	})
	if err != nil {
		tb.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == boss.SessionCookie {
			return c
		}
	}
	return nil
}
