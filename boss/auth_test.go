package boss_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	_ "modernc.org/sqlite"

	"github.com/bettertest/bettertest/boss"
	"github.com/bettertest/bettertest/internal/sse"
	wt "github.com/bettertest/bettertest/internal/workertest"
	"github.com/bettertest/bettertest/ui"
)

// noop is a pipeline that ends at once, touching no worker.
const noop = `print("nothing to do")
`

// route is one route of the boss, with a body its handler would take.
type route struct{ method, path, body string }

// routes is every route of the boss but the GitHub webhook, and two that
// are not routes.
var routes = []route{
	{"GET", "/", ""},
	{"GET", "/workers", ""},
	{"GET", "/flaky", ""},
	{"GET", "/runs/1", ""},
	{"GET", "/runs/1/tasks/t", ""},
	{"GET", "/runs/1/tasks/t/raw", ""},
	{"GET", "/nope", ""},
	{"GET", "/ui/app.js", ""},
	{"GET", "/ui/events?path=/", ""},
	{"POST", "/ui/sessions/0123456789abcdef01234567", `{"key":"r"}`},
	{"POST", "/logout", ""},
	{"GET", "/api/pipelines", ""},
	{"POST", "/api/pipelines/noop/runs", `{"trigger":"api"}`},
	{"GET", "/api/runs", ""},
	{"GET", "/api/runs/1", ""},
	{"POST", "/api/runs/1/cancel", ""},
	{"POST", "/api/runs/1/approve", ""},
	{"GET", "/api/runs/1/tasks/t/log", ""},
	{"GET", "/api/runs/1/log", ""},
	{"GET", "/api/runs/1/tests", ""},
	{"GET", "/api/runs/1/artifacts/" + strings.Repeat("0", 64), ""},
	{"GET", "/api/flaky", ""},
	{"POST", "/api/quarantine", `{"pipeline":"noop","test":"t","quarantined":true}`},
	{"GET", "/api/workers", ""},
	{"GET", "/api/events", ""},
	{"GET", "/api/nope", ""},
}

// answer is what the boss answered: the status, the headers that matter
// here, and the body (left out for redirects, whose body is for people).
type answer struct {
	Status          int
	Location, Auth  string
	SetCookie, Body string
	CORS            string // Access-Control-Allow-Origin: never set
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send sends one request; header is pairs of name and value ("Host" sets the Host).
func send(t testing.TB, base string, rt route, header ...string) answer {
	t.Helper()
	var body io.Reader
	if rt.body != "" {
		body = strings.NewReader(rt.body)
	}
	req, err := http.NewRequest(rt.method, base+rt.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Auth: resp.Header.Get("WWW-Authenticate"), SetCookie: resp.Header.Get("Set-Cookie"), CORS: resp.Header.Get("Access-Control-Allow-Origin")}
	if a.Status != http.StatusSeeOther {
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		a.Body = string(data)
	}
	return a
}

func apiError(msg string) string {
	data, _ := json.Marshal(map[string]string{"error": msg})
	return string(data) + "\n"
}

// isPage says whether a route is a page, whose visitors are sent to log in.
func isPage(rt route) bool {
	return rt.method == "GET" && !strings.HasPrefix(rt.path, "/api/") && !strings.HasPrefix(rt.path, "/ui/")
}

// refused is the answer to a request without valid credentials.
func refused(rt route, why string) answer {
	if isPage(rt) {
		return answer{Status: http.StatusSeeOther, Location: "/login?next=" + url.QueryEscape(rt.path)}
	}
	return answer{Status: http.StatusUnauthorized, Auth: `Bearer realm="bettertest"`, Body: apiError(why)}
}

// login logs in with the form and returns the session cookie's value.
func login(t testing.TB, base, name, password string) string {
	t.Helper()
	a := send(t, base, route{"POST", "/login", url.Values{"name": {name}, "password": {password}, "next": {"/flaky"}}.Encode()},
		"Content-Type", "application/x-www-form-urlencoded", "Origin", base)
	if a.Status != http.StatusSeeOther || a.Location != "/flaky" {
		t.Fatalf("log in as %s: %+v", name, a)
	}
	c, err := http.ParseSetCookie(a.SetCookie)
	if err != nil {
		t.Fatal(err)
	}
	return c.Value
}

// users writes a users file with alice, an operator, and victor, a viewer,
// and gives each an API token.
func users(t *testing.T, dir string) (path, aliceToken, victorToken string) {
	t.Helper()
	path = filepath.Join(dir, "users.json")
	for _, u := range []struct {
		name string
		role boss.Role
	}{{"alice", boss.RoleOperator}, {"victor", boss.RoleViewer}} {
		if err := boss.AddUser(path, u.name, u.role, []byte(u.name+"-password")); err != nil {
			t.Fatal(err)
		}
	}
	aliceToken, err := boss.AddToken(path, "alice")
	if err != nil {
		t.Fatal(err)
	}
	victorToken, err = boss.AddToken(path, "victor")
	if err != nil {
		t.Fatal(err)
	}
	return path, aliceToken, victorToken
}

func check(t *testing.T, what string, got, want answer) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// Every route of a boss with users, asked by someone who may not, is
// refused with the status that says why, and changes nothing.
func TestEveryRouteRefusesWhoMayNot(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	usersFile, aliceToken, victorToken := users(t, dir)
	worker := wt.Start(t, bin, wt.Options{})
	opts := wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "noop", noop)}, Workers: []*wt.Worker{worker}, Args: []string{"--users-file", usersFile}}
	first := wt.StartBoss(t, bin, opts)

	// A wrong password gets the form again and no cookie.
	check(t, "a wrong password", send(t, first.URL, route{"POST", "/login", "name=alice&password=wrong&next=%2F"}, "Content-Type", "application/x-www-form-urlencoded"),
		answer{Status: http.StatusUnauthorized, Body: loginPage("alice", "/", "Wrong name or password.")})
	check(t, "an unknown name", send(t, first.URL, route{"POST", "/login", "name=mallory&password=alice-password"}, "Content-Type", "application/x-www-form-urlencoded"),
		answer{Status: http.StatusUnauthorized, Body: loginPage("mallory", "/", "Wrong name or password.")})
	check(t, "the login page", send(t, first.URL, route{"GET", "/login?next=%2Fruns%2F1", ""}), answer{Status: http.StatusOK, Body: loginPage("", "/runs/1", "")})
	check(t, "a login page sending elsewhere", send(t, first.URL, route{"GET", "/login?next=%2F%2Fevil.example", ""}), answer{Status: http.StatusOK, Body: loginPage("", "/", "")})

	alice, expired, victor := login(t, first.URL, "alice", "alice-password"), login(t, first.URL, "alice", "alice-password"), login(t, first.URL, "victor", "victor-password")

	// Sessions outlive the boss; one whose time is up does not.
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(first.DataDir, "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(expired))
	if res, err := db.Exec(`UPDATE sessions SET expires_ms = 1 WHERE hash = ?`, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("the session to expire is not in the history: %d rows", n)
	}
	db.Close()
	opts.DataDir = first.DataDir
	b := wt.StartBoss(t, bin, opts)

	runs := route{"GET", "/api/runs", ""}
	flaky := route{"GET", "/api/flaky", ""}
	check(t, "alice's session after a restart", send(t, b.URL, runs, "Cookie", "bettertest_session="+alice), answer{Status: 200, Body: "[]\n"})
	flakyBefore := send(t, b.URL, flaky, "Authorization", "Bearer "+aliceToken)

	const noCredentials = "log in at /login, or send an API token as Authorization: Bearer TOKEN (bettertest boss token add NAME --users-file FILE makes one)"
	const badToken = "the API token is not valid: make one with bettertest boss token add NAME --users-file FILE and send it as Authorization: Bearer TOKEN"
	for _, rt := range routes {
		post := rt.method == "POST"
		check(t, "no credentials: "+rt.method+" "+rt.path, send(t, b.URL, rt), refused(rt, noCredentials))
		check(t, "a wrong token: "+rt.method+" "+rt.path, send(t, b.URL, rt, "Authorization", "Bearer "+aliceToken+"x"), refused(rt, badToken))
		check(t, "a Basic password: "+rt.method+" "+rt.path, send(t, b.URL, rt, "Authorization", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ="), refused(rt, badToken))
		check(t, "an expired session: "+rt.method+" "+rt.path, send(t, b.URL, rt, "Cookie", "bettertest_session="+expired),
			refused(rt, "your session has expired: log in again at /login"))
		check(t, "a made-up session: "+rt.method+" "+rt.path, send(t, b.URL, rt, "Cookie", "bettertest_session=AAAA"),
			refused(rt, "your session has ended: log in again at /login"))
		check(t, "a foreign Host: "+rt.method+" "+rt.path, send(t, b.URL, rt, "Host", "evil.example:80", "Authorization", "Bearer "+aliceToken),
			answer{Status: http.StatusMisdirectedRequest, Body: apiError(`this boss does not answer to the name "evil.example:80": use its own address, or start it with --public-url https://evil.example:80`)})
		if !post {
			continue
		}
		if strings.HasPrefix(rt.path, "/api/") {
			forbidden := answer{Status: http.StatusForbidden, Body: apiError("victor is a viewer: only an operator may POST " + rt.path + "; ask an admin to make you one (bettertest boss user add)")}
			check(t, "a viewer's token: "+rt.path, send(t, b.URL, rt, "Authorization", "Bearer "+victorToken, "Content-Type", "application/json"), forbidden)
			check(t, "a viewer's session: "+rt.path, send(t, b.URL, rt, "Cookie", "bettertest_session="+victor, "Content-Type", "application/json", "Sec-Fetch-Site", "same-origin"), forbidden)
		}
		form := route{rt.method, rt.path, "trigger=api"}
		check(t, "a cross-origin form: "+rt.path, send(t, b.URL, form, "Cookie", "bettertest_session="+alice, "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example"),
			answer{Status: http.StatusForbidden, Body: apiError("this request comes from another site (Origin: http://evil.example): use this boss's own pages, or send it from a program")})
		check(t, "a cross-site fetch: "+rt.path, send(t, b.URL, rt, "Cookie", "bettertest_session="+alice, "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site", "Origin", b.URL),
			answer{Status: http.StatusForbidden, Body: apiError("this request comes from another site (Sec-Fetch-Site: cross-site): use this boss's own pages, or send it from a program")})
		want := "application/json"
		if rt.path == "/logout" {
			want = "application/x-www-form-urlencoded"
		}
		check(t, "text/plain JSON: "+rt.path, send(t, b.URL, route{rt.method, rt.path, `{"trigger":"api"}`}, "Authorization", "Bearer "+aliceToken, "Content-Type", "text/plain"),
			answer{Status: http.StatusUnsupportedMediaType, Body: apiError(`the body is "text/plain": send it as Content-Type: ` + want)})
	}
	// Nothing changed.
	check(t, "the runs", send(t, b.URL, runs, "Authorization", "Bearer "+victorToken), answer{Status: 200, Body: "[]\n"})
	check(t, "the flaky tests", send(t, b.URL, flaky, "Cookie", "bettertest_session="+victor), flakyBefore)

	// Who may, can: alice from the boss's own page, and with her token.
	trigger := route{"POST", "/api/pipelines/noop/runs", `{"trigger":"ui"}`}
	if a := send(t, b.URL, trigger, "Cookie", "bettertest_session="+alice, "Content-Type", "application/json", "Sec-Fetch-Site", "same-origin", "Origin", b.URL); a.Status != http.StatusCreated {
		t.Errorf("alice's page starts a run: %+v", a)
	}
	if a := send(t, b.URL, trigger, "Authorization", "Bearer "+aliceToken, "Content-Type", "application/json; charset=utf-8"); a.Status != http.StatusCreated {
		t.Errorf("alice's token starts a run: %+v", a)
	}
	if a := send(t, b.URL, runs, "Host", "localhost"+b.URL[strings.LastIndex(b.URL, ":"):], "Authorization", "Bearer "+victorToken); a.Status != 200 || !strings.Contains(a.Body, `"id":2`) {
		t.Errorf("victor reads the runs by the name localhost: %+v", a)
	}

	// A viewer's tab moves around but starts nothing, and it is theirs alone.
	tab := openTab(t, b.URL, victor)
	if a := send(t, b.URL, route{"POST", "/ui/sessions/" + tab.id, `{"action":"run","pipeline":"noop"}`}, "Cookie", "bettertest_session="+victor, "Content-Type", "application/json", "Sec-Fetch-Site", "same-origin"); a.Status != http.StatusNoContent {
		t.Errorf("victor clicks Run: %+v", a)
	}
	tab.until(t, ui.Fragment{Op: "append", ID: "notice", HTML: "victor is a viewer: only an operator may start, cancel, approve or quarantine; ask an admin to make you one"})
	check(t, "alice in victor's tab", send(t, b.URL, route{"POST", "/ui/sessions/" + tab.id, `{"action":"run","pipeline":"noop"}`}, "Cookie", "bettertest_session="+alice, "Content-Type", "application/json"),
		answer{Status: http.StatusForbidden, Body: apiError("this tab belongs to someone else: reload the page")})
	tab.close()
	if a := send(t, b.URL, runs, "Authorization", "Bearer "+victorToken); a.Status != 200 || strings.Contains(a.Body, `"id":3`) {
		t.Errorf("victor's tab started a run: %+v", a)
	}

	// Logging out ends the session, and its streams.
	aliceEvents, closeAlice := events(t, b.URL, "/api/events", "Cookie", "bettertest_session="+alice)
	check(t, "log out", send(t, b.URL, route{"POST", "/logout", ""}, "Cookie", "bettertest_session="+alice, "Origin", b.URL),
		answer{Status: http.StatusSeeOther, Location: "/login", SetCookie: "bettertest_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"})
	check(t, "alice's ended session", send(t, b.URL, runs, "Cookie", "bettertest_session="+alice), refused(runs, "your session has ended: log in again at /login"))
	ends(t, "alice's events after she logged out", aliceEvents, closeAlice)

	// The running boss sees a token added, and a user removed, at once.
	newToken, err := boss.AddToken(usersFile, "victor")
	if err != nil {
		t.Fatal(err)
	}
	b.WaitLog(t, "tokens=3", 1)
	if a := send(t, b.URL, runs, "Authorization", "Bearer "+newToken); a.Status != 200 {
		t.Errorf("victor's new token: %+v", a)
	}
	victorEvents, closeVictor := events(t, b.URL, "/api/events", "Cookie", "bettertest_session="+victor)
	victorTab := openTab(t, b.URL, victor)
	victorTokenEvents, closeToken := events(t, b.URL, "/api/events", "Authorization", "Bearer "+newToken)
	if err := boss.RemoveUser(usersFile, "victor"); err != nil {
		t.Fatal(err)
	}
	b.WaitLog(t, "users=1", 1)
	check(t, "a removed user's token", send(t, b.URL, runs, "Authorization", "Bearer "+newToken), refused(runs, badToken))
	check(t, "a removed user's session", send(t, b.URL, runs, "Cookie", "bettertest_session="+victor), refused(runs, "your session has ended: log in again at /login"))
	ends(t, "a removed user's events", victorEvents, closeVictor)
	ends(t, "a removed user's tab", victorTab.events, victorTab.close)
	ends(t, "a removed user's events by token", victorTokenEvents, closeToken)
}

// loginPage is the login page as the boss serves it.
func loginPage(name, next, notice string) string {
	return "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n" +
		"<title>Log in · bettertest</title>\n<link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"/ui/app.css\">\n</head>\n<body>\n" +
		"<header id=\"nav\"><span class=\"brand\">bettertest</span></header>\n" +
		`<div id="notice" role="status">` + notice + "</div>\n" +
		"<main id=\"main\">\n<h1>Log in</h1>\n<form class=\"login\" method=\"post\" action=\"/login\">\n" +
		`<input type="hidden" name="next" value="` + next + "\">\n" +
		`<label>Name <input name="name" autocomplete="username" required autofocus value="` + name + "\"></label>\n" +
		"<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n" +
		"<button>Log in</button>\n</form>\n</main>\n</body>\n</html>\n"
}

// Without users the boss serves one person on loopback as before, and still
// refuses foreign names, other sites and text/plain bodies.
func TestNoUsersLoopbackOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	noopPath := pipedef(t, dir, "noop", noop)
	cmd := exec.Command(bin, "boss", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir(), "--workers-dir", t.TempDir(),
		"--pipedef", noopPath, "--worker", "w0="+worker.URL, "--worker-token-file", "w0="+worker.TokenFile)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || string(out) != "bettertest boss: --listen 0.0.0.0:0 is reachable from other machines, and this boss has no users, so anyone there could run anything: "+
		"add users with bettertest boss user add NAME --users-file FILE and pass --users-file FILE, or listen on 127.0.0.1\n" {
		t.Errorf("a boss without users on 0.0.0.0: %v, exit %d:\n%s", err, code, out)
	}

	b := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{noopPath}, Workers: []*wt.Worker{worker}})
	trigger := route{"POST", "/api/pipelines/noop/runs", `{"trigger":"api"}`}
	check(t, "a foreign Host", send(t, b.URL, route{"GET", "/api/runs", ""}, "Host", "rebound.example"),
		answer{Status: http.StatusMisdirectedRequest, Body: apiError(`this boss does not answer to the name "rebound.example": use its own address, or start it with --public-url https://rebound.example`)})
	check(t, "a cross-origin text/plain POST", send(t, b.URL, trigger, "Content-Type", "text/plain", "Origin", "http://evil.example"),
		answer{Status: http.StatusForbidden, Body: apiError("this request comes from another site (Origin: http://evil.example): use this boss's own pages, or send it from a program")})
	check(t, "a text/plain POST", send(t, b.URL, trigger, "Content-Type", "text/plain"),
		answer{Status: http.StatusUnsupportedMediaType, Body: apiError(`the body is "text/plain": send it as Content-Type: application/json`)})
	check(t, "the login page", send(t, b.URL, route{"GET", "/login", ""}), answer{Status: http.StatusSeeOther, Location: "/"})
	check(t, "the runs", send(t, b.URL, route{"GET", "/api/runs", ""}), answer{Status: 200, Body: "[]\n"})
	if a := send(t, b.URL, trigger, "Content-Type", "application/json"); a.Status != http.StatusCreated {
		t.Errorf("a program starts a run: %+v", a)
	}
	if a := send(t, b.URL, route{"GET", "/", ""}); a.Status != 200 {
		t.Errorf("the pipelines page: %+v", a)
	}
}

// uiTab is the event stream of one tab of the UI, as the page's script holds it.
type uiTab struct {
	id     string
	events *sse.Reader
	close  func()
}

func openTab(t *testing.T, base, cookie string) *uiTab {
	t.Helper()
	tab := &uiTab{}
	tab.events, tab.close = events(t, base, "/ui/events?path=/", "Cookie", "bettertest_session="+cookie)
	ev, err := tab.events.Next()
	if err != nil || ev.Name != "session" || json.Unmarshal([]byte(ev.Data), &tab.id) != nil {
		t.Fatalf("the tab's first event: %+v %v", ev, err)
	}
	return tab
}

// until reads the tab's fragments until one is want.
func (tab *uiTab) until(t *testing.T, want ui.Fragment) {
	t.Helper()
	bound := time.AfterFunc(wt.Deadline, tab.close)
	defer bound.Stop()
	for {
		ev, err := tab.events.Next()
		if err != nil {
			t.Fatalf("no fragment %+v: %v", want, err)
		}
		var frags []ui.Fragment
		if ev.Name != "fragments" || json.Unmarshal([]byte(ev.Data), &frags) != nil {
			continue
		}
		for _, f := range frags {
			if reflect.DeepEqual(f, want) {
				return
			}
		}
	}
}

// The users and tokens commands, with the password typed on a terminal,
// and bettertest run with a token.
func TestUserCommandsAndRunWithAToken(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.json")
	tokenFile := filepath.Join(dir, "alice.token")

	out, code := typed(t, []string{"boss", "user", "add", "alice", "--users-file", usersFile, "--role", "operator"}, "alice-secret", "alice-secret")
	if code != 0 || out != "added alice (operator) to "+usersFile+"\n" {
		t.Errorf("user add: exit %d: %q", code, out)
	}
	out, code = typed(t, []string{"boss", "user", "add", "bob", "--users-file", usersFile}, "bob-secret", "bob-secrex")
	if code != 1 || out != "" {
		t.Errorf("user add with two passwords: exit %d: %q", code, out)
	}
	cmd := exec.Command(bin, "boss", "user", "passwd", "alice", "--users-file", usersFile)
	if got, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 1 || string(got) != "bettertest boss: the password is read from a terminal, and standard input is not one: run this command in a terminal\n" {
		t.Errorf("user passwd without a terminal: exit %d: %q", cmd.ProcessState.ExitCode(), got)
	}
	cmd = exec.Command(bin, "boss", "token", "add", "alice", "--users-file", usersFile, "--out", tokenFile)
	if got, err := cmd.CombinedOutput(); err != nil || string(got) != "wrote a new API token of alice to "+tokenFile+": pass it with --token-file "+tokenFile+"\n" {
		t.Errorf("token add: %v: %q", err, got)
	}
	for _, f := range []string{usersFile, tokenFile} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, info.Mode(), err)
		}
	}
	var saved struct {
		Users []struct {
			Name, Role, Password string
			Tokens               []struct{ SHA256 string }
		}
	}
	data, _ := os.ReadFile(usersFile)
	token, _ := os.ReadFile(tokenFile)
	sum := sha256.Sum256(token[:len(token)-1])
	if err := json.Unmarshal(data, &saved); err != nil || len(saved.Users) != 1 || saved.Users[0].Name != "alice" || saved.Users[0].Role != "operator" ||
		!strings.HasPrefix(saved.Users[0].Password, "$argon2id$v=19$m=65536,t=3,p=4$") || len(saved.Users[0].Tokens) != 1 ||
		saved.Users[0].Tokens[0].SHA256 != hex.EncodeToString(sum[:]) || strings.Contains(string(data), string(token[:len(token)-1])) {
		t.Errorf("the users file: %v\n%s", err, data)
	}

	worker := wt.Start(t, bin, wt.Options{})
	b := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "noop", noop)}, Workers: []*wt.Worker{worker}, Args: []string{"--users-file", usersFile}})
	login(t, b.URL, "alice", "alice-secret")
	cmd = exec.Command(bin, "run", "--boss", b.URL, "noop")
	if got, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 1 || string(got) != "bettertest run: the boss refused POST /api/pipelines/noop/runs (HTTP 401): "+
		"log in at /login, or send an API token as Authorization: Bearer TOKEN (bettertest boss token add NAME --users-file FILE makes one)\n" {
		t.Errorf("run without a token: exit %d: %q", cmd.ProcessState.ExitCode(), got)
	}
	cmd = exec.Command(bin, "run", "--boss", b.URL, "--token-file", tokenFile, "noop")
	if got, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(got), "run #1 of noop: "+b.URL+"/runs/1\n") {
		t.Errorf("run with alice's token: %v: %q", err, got)
	}
}

// typed runs bettertest with a terminal for its standard input and error,
// answers each password prompt with the next password, and returns its
// standard output and exit code.
func typed(t *testing.T, args []string, passwords ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var stdout strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stdout, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	term := bufio.NewReader(ptmx)
	for i, p := range passwords {
		prompt, err := term.ReadString(':')
		want := "Password for " + args[3] + ":"
		if i > 0 {
			want = "Again:"
		}
		if err != nil || !strings.HasSuffix(prompt, want) {
			t.Fatalf("prompt %q, want %q: %v", prompt, want, err)
		}
		fmt.Fprintf(ptmx, "%s\n", p)
	}
	go io.Copy(io.Discard, term)
	_ = cmd.Wait()
	return stdout.String(), cmd.ProcessState.ExitCode()
}

// With --tls-cert and --tls-key the boss serves https, and its session
// cookie is Secure.
func TestTLSMakesTheCookieSecure(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	usersFile := filepath.Join(dir, "users.json")
	if err := boss.AddUser(usersFile, "alice", boss.RoleOperator, []byte("alice-password")); err != nil {
		t.Fatal(err)
	}
	worker := wt.Start(t, bin, wt.Options{})
	b := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "noop", noop)}, Workers: []*wt.Worker{worker},
		Args: []string{"--users-file", usersFile, "--tls-cert", certFile, "--tls-key", keyFile}})
	base := "https" + strings.TrimPrefix(b.URL, "http")
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: noRedirects.CheckRedirect,
	}
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader("name=alice&password=alice-password"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if err != nil || resp.StatusCode != http.StatusSeeOther || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("log in over https: %s %q %v", resp.Status, resp.Header.Get("Set-Cookie"), err)
	}
}

// selfSigned makes a certificate for 127.0.0.1 and returns its files and a
// pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "boss"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// events opens an event stream as a browser does; header is pairs of name and value.
func events(t *testing.T, base, path string, header ...string) (*sse.Reader, func()) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return sse.NewReader(resp.Body), func() { resp.Body.Close() }
}

// ends reads a stream to its end, which must come from the boss.
func ends(t *testing.T, what string, r *sse.Reader, close func()) {
	t.Helper()
	bound := time.AfterFunc(wt.Deadline, close)
	defer bound.Stop()
	defer close()
	for {
		if _, err := r.Next(); err != nil {
			if err != io.EOF {
				t.Errorf("%s: the stream did not end: %v", what, err)
			}
			return
		}
	}
}

// --public-read lets anonymous visitors read and nothing more; --public-url
// names the boss; the webhook answers whatever the Host; a users file that
// is missing or readable by others stops the boss from starting.
func TestPublicReadAndTheBosssNames(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	usersFile, _, _ := users(t, dir)
	worker := wt.Start(t, bin, wt.Options{})
	noopPath := pipedef(t, dir, "noop", noop)
	b := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{noopPath}, Workers: []*wt.Worker{worker},
		Args: []string{"--users-file", usersFile, "--public-read", "--public-url", "https://CI.example.com"}})

	runs := route{"GET", "/api/runs", ""}
	check(t, "an anonymous read", send(t, b.URL, runs), answer{Status: 200, Body: "[]\n"})
	check(t, "an anonymous read by the public name", send(t, b.URL, runs, "Host", "ci.example.com"), answer{Status: 200, Body: "[]\n"})
	check(t, "an anonymous run", send(t, b.URL, route{"POST", "/api/pipelines/noop/runs", ""}),
		refused(route{"POST", "/api/pipelines/noop/runs", ""}, "log in at /login, or send an API token as Authorization: Bearer TOKEN (bettertest boss token add NAME --users-file FILE makes one)"))
	check(t, "a POST from the public origin", send(t, b.URL, route{"POST", "/api/quarantine", `{}`}, "Host", "ci.example.com", "Origin", "https://ci.example.com", "Content-Type", "application/json"),
		refused(route{"POST", "/api/quarantine", ""}, "log in at /login, or send an API token as Authorization: Bearer TOKEN (bettertest boss token add NAME --users-file FILE makes one)"))
	if a := send(t, b.URL, route{"GET", "/", ""}); a.Status != 200 || strings.Contains(a.Body, `class="who"`) {
		t.Errorf("the pipelines page for an anonymous visitor: %+v", a)
	}
	tab := &uiTab{}
	tab.events, tab.close = events(t, b.URL, "/ui/events?path=/")
	ev, err := tab.events.Next()
	if err != nil || json.Unmarshal([]byte(ev.Data), &tab.id) != nil {
		t.Fatalf("an anonymous tab: %+v %v", ev, err)
	}
	if a := send(t, b.URL, route{"POST", "/ui/sessions/" + tab.id, `{"key":"r"}`}, "Content-Type", "application/json"); a.Status != http.StatusNoContent {
		t.Errorf("an anonymous r: %+v", a)
	}
	tab.until(t, ui.Fragment{Op: "append", ID: "notice", HTML: "an anonymous visitor is a viewer: only an operator may start, cancel, approve or quarantine; ask an admin to make you one"})
	tab.close()
	check(t, "the webhook by any name", send(t, b.URL, route{"POST", "/hooks/github", "{}"}, "Host", "evil.example", "Content-Type", "text/plain"),
		answer{Status: http.StatusNotFound, Body: apiError("webhooks are off: start the boss with --github-webhook-secret-file FILE")})
	check(t, "the runs", send(t, b.URL, runs), answer{Status: 200, Body: "[]\n"})

	start := func(usersFile string, args ...string) string {
		cmd := exec.Command(bin, append([]string{"boss", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--workers-dir", t.TempDir(), "--users-file", usersFile,
			"--pipedef", noopPath, "--worker", "w0=" + worker.URL, "--worker-token-file", "w0=" + worker.TokenFile}, args...)...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	missing := filepath.Join(dir, "nobody.json")
	if got, want := start(missing), "bettertest boss: --users-file "+missing+" does not exist: add a user with bettertest boss user add NAME --users-file "+missing+"\n"; got != want {
		t.Errorf("a missing users file:\n got %q\nwant %q", got, want)
	}
	if got, want := start(usersFile, "--listen", "0.0.0.0:0"), "bettertest boss: --listen 0.0.0.0:0 answers on every address, but the boss only answers to its own names: pass --public-url URL with the name people reach it by\n"; got != want {
		t.Errorf("users on every address without --public-url:\n got %q\nwant %q", got, want)
	}
	if err := os.Chmod(usersFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := start(usersFile), "bettertest boss: users file "+usersFile+" is readable by group or others (mode 0644): run chmod 600 "+usersFile+"\n"; got != want {
		t.Errorf("a users file others can read:\n got %q\nwant %q", got, want)
	}
}
