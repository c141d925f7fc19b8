package boss

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/ui"
)

// SessionLife is how long a login lasts.
const SessionLife = 7 * 24 * time.Hour

// SessionCookie is the name of the login cookie.
const SessionCookie = "bettertest_session"

// principal is who sends a request.
type principal struct {
	Name string // "" for the one local user of a boss without users, or an anonymous reader
	Role Role
}

func (p principal) may(r Role) bool { return r == RoleViewer || p.Role == RoleOperator }

type principalKey struct{}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

type session struct {
	user    string
	expires time.Time
}

// auth decides who may do what: it holds the users file as last read, the
// tokens, and the live sessions (kept in the history too, so they outlive
// a restart of the boss).
type auth struct {
	path       string // the users file; "": no users, the boss serves one person on loopback
	publicRead bool
	secure     bool            // cookies are Secure even over http: TLS ends in a proxy in front
	hosts      map[string]bool // the names this boss answers to
	origins    map[string]bool // its origins besides the request's own: --public-url's
	log        *slog.Logger
	store      *store
	checks     chan struct{} // password checks under way: each takes 64 MiB

	mu       sync.RWMutex
	users    map[string]user
	tokens   map[string]string // SHA-256 of a token → user
	sessions map[string]session

	streamsMu sync.Mutex
	streams   map[*stream]struct{}
}

func newAuth(cfg Config, st *store, log *slog.Logger) (*auth, error) {
	a := &auth{path: cfg.UsersFile, publicRead: cfg.PublicRead, log: log, store: st, checks: make(chan struct{}, 2),
		hosts: map[string]bool{"localhost": true}, origins: map[string]bool{}, sessions: map[string]session{}, streams: map[*stream]struct{}{}}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %s is not HOST:PORT: %w", cfg.Listen, err)
	}
	ip := net.ParseIP(host)
	everywhere := host == "" || (ip != nil && ip.IsUnspecified()) // 0.0.0.0, ::, or no host
	if !everywhere {
		a.hosts[strings.ToLower(host)] = true
	}
	if pub := cfg.GitHub.PublicURL; pub != "" {
		u, err := url.Parse(pub)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--public-url %q is not an http(s) URL: pass e.g. https://ci.example.com", pub)
		}
		a.hosts[strings.ToLower(u.Hostname())] = true
		a.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	if everywhere && cfg.GitHub.PublicURL == "" && a.path != "" {
		return nil, fmt.Errorf("--listen %s answers on every address, but the boss only answers to its own names: pass --public-url URL with the name people reach it by", cfg.Listen)
	}
	a.secure = strings.HasPrefix(strings.ToLower(cfg.GitHub.PublicURL), "https:")
	if a.path == "" {
		if !loopback(host) {
			return nil, fmt.Errorf("--listen %s is reachable from other machines, and this boss has no users, so anyone there could run anything: "+
				"add users with bettertest boss user add NAME --users-file FILE and pass --users-file FILE, or listen on 127.0.0.1", cfg.Listen)
		}
		return a, nil
	}
	u, err := readUsers(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--users-file %s does not exist: add a user with bettertest boss user add NAME --users-file %s", a.path, a.path)
	}
	if err != nil {
		return nil, err
	}
	a.setUsers(u)
	if err := st.w.exec(sessionsSchema); err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	rows, err := st.rdb.Query(`SELECT hash, user, expires_ms FROM sessions`)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var hash, name string
		var ms int64
		if err := rows.Scan(&hash, &name, &ms); err != nil {
			return nil, fmt.Errorf("sessions: %w", err)
		}
		a.sessions[hash] = session{user: name, expires: time.UnixMilli(ms)}
	}
	return a, rows.Err()
}

// sessionsSchema keeps logins across restarts: the SHA-256 of each cookie,
// never the cookie. A history made by an older boss gains the table.
const sessionsSchema = `CREATE TABLE IF NOT EXISTS sessions (
	hash       TEXT PRIMARY KEY,
	user       TEXT NOT NULL,
	expires_ms INTEGER NOT NULL
)`

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *auth) setUsers(u users) {
	byName := map[string]user{}
	tokens := map[string]string{}
	for _, x := range u.Users {
		byName[x.Name] = x
		for _, t := range x.Tokens {
			tokens[t.SHA256] = x.Name
		}
	}
	a.mu.Lock()
	a.users, a.tokens = byName, tokens
	a.mu.Unlock()
	a.endStreams(func(st *stream) bool {
		_, exists := byName[st.user]
		_, token := tokens[st.cred.hash]
		return !exists || (st.cred.token && !token)
	})
	a.log.Info("users loaded", "file", a.path, "users", len(byName), "tokens", len(tokens))
}

// watch reloads the users file whenever it changes, so users and tokens
// added by `bettertest boss user|token` count at once. The directory is
// watched, not the file: the commands replace the file by a rename.
func (a *auth) watch(ctx context.Context) error {
	if a.path == "" {
		return nil
	}
	name := filepath.Base(a.path)
	return watchDir(ctx, filepath.Dir(a.path), "--users-file "+a.path, a.log, func(path string) {
		if filepath.Base(path) != name {
			return
		}
		u, err := readUsers(a.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			a.setUsers(users{}) // gone: nobody may log in, not everybody
		case err != nil:
			a.log.Error("users file not reloaded: the boss keeps the users it had", "err", err)
		default:
			a.setUsers(u)
		}
	})
}

// hostAllowed says whether a Host header names this boss. Any other name
// is a DNS rebinding attack or a misdirected request.
func (a *auth) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return a.hosts[host] || loopback(host)
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// formPaths take an HTML form (the login page's and the logout button's);
// every other body is JSON.
func formPath(path string) bool { return path == "/login" || path == "/logout" }

// crossSite says why a state-changing request comes from another site, or "".
// Browsers send Sec-Fetch-Site (all current ones) or at least Origin with
// every POST a page makes, and no page can remove them. A request with
// neither comes from a program (curl, bettertest run, a script), which no
// web page can make a browser send, so it is judged by its credentials alone.
func (a *auth) crossSite(r *http.Request) string {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		if s == "same-origin" || s == "none" {
			return ""
		}
		return fmt.Sprintf("this request comes from another site (Sec-Fetch-Site: %s): use this boss's own pages, or send it from a program", s)
	}
	if o := r.Header.Get("Origin"); o != "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		if o == scheme+"://"+r.Host || a.origins[strings.ToLower(o)] {
			return ""
		}
		return fmt.Sprintf("this request comes from another site (Origin: %s): use this boss's own pages, or send it from a program", o)
	}
	return ""
}

// wrongType says why a request's body is not of the type its path takes, or "".
// Only JSON is taken (forms on the login and logout paths): a page on
// another site can send text/plain without asking, JSON it cannot.
func wrongType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.ContentLength == 0 {
		return ""
	}
	mt, _, _ := mime.ParseMediaType(ct)
	want := "application/json"
	if formPath(r.URL.Path) {
		want = "application/x-www-form-urlencoded"
	}
	if mt == want {
		return ""
	}
	if ct == "" {
		return "the body has no Content-Type: send it as Content-Type: " + want
	}
	return fmt.Sprintf("the body is %q: send it as Content-Type: %s", ct, want)
}

// middleware admits a request only when it is for this boss, from its own
// pages or a program, and from someone allowed to do it. GitHub's webhook is
// let through untouched: its HMAC signature is its credential.
func (a *auth) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hooks/github" {
			next.ServeHTTP(w, r)
			return
		}
		if !a.hostAllowed(r.Host) {
			httpapi.Fail(w, httpapi.Misdirected, fmt.Sprintf("this boss does not answer to the name %q: use its own address, or start it with --public-url https://%s", r.Host, r.Host))
			return
		}
		if why := a.crossSite(r); why != "" && !safeMethod(r.Method) {
			httpapi.Fail(w, httpapi.Forbidden, why)
			return
		}
		var p principal
		var cred credential
		if r.URL.Path != "/login" && r.URL.Path != "/ui/app.css" { // the login page and its style are for everyone
			var ok bool
			var why string
			if p, cred, ok, why = a.identify(r); !ok {
				a.refuse(w, r, why)
				return
			}
			if !safeMethod(r.Method) && strings.HasPrefix(r.URL.Path, "/api/") && !p.may(RoleOperator) {
				httpapi.Fail(w, httpapi.Forbidden, fmt.Sprintf("%s is a viewer: only an operator may %s %s; ask an admin to make you one (bettertest boss user add)", p.label(), r.Method, r.URL.Path))
				return
			}
		}
		if why := wrongType(r); why != "" && !safeMethod(r.Method) {
			httpapi.Fail(w, httpapi.UnsupportedMediaType, why)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if cred.hash != "" && strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			a.serveStream(next, w, r, p, cred)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (p principal) label() string {
	if p.Name == "" {
		return "an anonymous visitor"
	}
	return p.Name
}

// identify finds who sends r: by API token, else by session cookie. ok is
// false, with why, when r carries no valid credentials and needs some.
func (a *auth) identify(r *http.Request) (p principal, cred credential, ok bool, why string) {
	if a.path == "" {
		return principal{Role: RoleOperator}, cred, true, ""
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if h := r.Header.Get("Authorization"); h != "" {
		secret, found := strings.CutPrefix(h, "Bearer ")
		hash := sha256Hex(secret)
		name, known := a.tokens[hash]
		if !found || !known {
			return p, cred, false, "the API token is not valid: make one with bettertest boss token add NAME --users-file FILE and send it as Authorization: Bearer TOKEN"
		}
		return principal{Name: name, Role: a.users[name].Role}, credential{hash: hash, token: true}, true, ""
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		hash := sha256Hex(c.Value)
		s, known := a.sessions[hash]
		u, exists := a.users[s.user]
		switch {
		case known && exists && time.Now().Before(s.expires):
			return principal{Name: u.Name, Role: u.Role}, credential{hash: hash, expires: s.expires}, true, ""
		case known && exists:
			why = "your session has expired: log in again at /login"
		default:
			why = "your session has ended: log in again at /login"
		}
	}
	// Anonymous readers may read, and move around the UI: its POSTs are
	// keys and clicks, and the session refuses their actions.
	if a.publicRead && (safeMethod(r.Method) || strings.HasPrefix(r.URL.Path, "/ui/sessions/")) {
		return principal{Role: RoleViewer}, cred, true, ""
	}
	if why == "" {
		why = "log in at /login, or send an API token as Authorization: Bearer TOKEN (bettertest boss token add NAME --users-file FILE makes one)"
	}
	return p, cred, false, why
}

// credential is what proved who sent a request: the SHA-256 of a token or
// of a session cookie, and when a session ends.
type credential struct {
	hash    string
	token   bool
	expires time.Time
}

// stream is an event stream open on a credential: it ends when the
// credential does (logout, expiry, a removed user or token), not only when
// the client leaves.
type stream struct {
	user   string
	cred   credential
	cancel context.CancelFunc
}

// serveStream serves a stream that ends with its credential.
func (a *auth) serveStream(next http.Handler, w http.ResponseWriter, r *http.Request, p principal, cred credential) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if !cred.token {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, cred.expires)
		defer stop()
	}
	st := &stream{user: p.Name, cred: cred, cancel: cancel}
	a.streamsMu.Lock()
	a.streams[st] = struct{}{}
	a.streamsMu.Unlock()
	defer func() {
		a.streamsMu.Lock()
		delete(a.streams, st)
		a.streamsMu.Unlock()
	}()
	next.ServeHTTP(w, r.WithContext(ctx))
}

// endStreams ends the streams for which end says so.
func (a *auth) endStreams(end func(*stream) bool) {
	a.streamsMu.Lock()
	defer a.streamsMu.Unlock()
	for st := range a.streams {
		if end(st) {
			st.cancel()
		}
	}
}

// refuse answers a request without valid credentials: a page sends the
// browser to the login page, the API says 401.
func (a *auth) refuse(w http.ResponseWriter, r *http.Request, why string) {
	if safeMethod(r.Method) && !strings.HasPrefix(r.URL.Path, "/api/") && !strings.HasPrefix(r.URL.Path, "/ui/") {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="bettertest"`)
	httpapi.Fail(w, httpapi.Unauthenticated, why)
}

// localPath is next if it is a path on this boss, else "/": the login page
// never sends anyone to another site.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (b *Boss) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if b.auth.path == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeLogin(w, http.StatusOK, ui.Login{Next: localPath(r.URL.Query().Get("next"))})
}

func writeLogin(w http.ResponseWriter, status int, l ui.Login) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(ui.LoginPage(l)))
}

// dummyHash is checked against when the name is unknown, so that a wrong
// name takes as long as a wrong password and does not tell who exists. It
// is made at the first such login, not when the program starts: hashing
// takes argon2id's 64 MiB, which every subcommand would otherwise pay and
// the boss would carry as heap for its whole life.
var dummyHash = sync.OnceValue(func() string { return hashPassword([]byte("no such user")) })

func (b *Boss) handleLogin(w http.ResponseWriter, r *http.Request) {
	a := b.auth
	if a.path == "" {
		httpapi.Fail(w, httpapi.NotFound, "this boss has no users, so nobody logs in: start it with --users-file FILE to have some")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		writeLogin(w, http.StatusBadRequest, ui.Login{Notice: "The form could not be read: try again."})
		return
	}
	name, password, next := r.PostForm.Get("name"), r.PostForm.Get("password"), localPath(r.PostForm.Get("next"))
	a.mu.RLock()
	u, known := a.users[name]
	a.mu.RUnlock()
	var hash string
	if known {
		hash = u.Password
	} else {
		hash = dummyHash()
	}
	a.checks <- struct{}{}
	ok := checkPassword(hash, []byte(password)) && known
	<-a.checks
	if !ok {
		writeLogin(w, http.StatusUnauthorized, ui.Login{Name: name, Next: next, Notice: "Wrong name or password."})
		return
	}
	secret := randomSecret()
	hashed := sha256Hex(secret)
	expires := time.Now().Add(SessionLife)
	if err := a.store.w.exec(`INSERT INTO sessions (hash, user, expires_ms) VALUES (?, ?, ?)`, hashed, name, expires.UnixMilli()); err != nil {
		status, why := b.api().Answer(r, fmt.Errorf("save the session of %s: %w", name, err))
		writeLogin(w, status, ui.Login{Name: name, Next: next, Notice: "The session could not be saved: " + why + "."})
		return
	}
	// Sessions whose time is up go here, where one is made: the history
	// keeps no more than a week of logins.
	now := time.Now()
	if err := a.store.w.exec(`DELETE FROM sessions WHERE expires_ms < ?`, now.UnixMilli()); err != nil {
		b.log.Error("sessions: could not delete those that expired", "err", err)
	}
	a.mu.Lock()
	for h, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, h)
		}
	}
	a.sessions[hashed] = session{user: name, expires: expires}
	a.mu.Unlock()
	b.log.Info("logged in", "user", name)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", Expires: expires, MaxAge: int(SessionLife.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || a.secure})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (b *Boss) handleLogout(w http.ResponseWriter, r *http.Request) {
	a := b.auth
	if c, err := r.Cookie(SessionCookie); err == nil && a.path != "" {
		hashed := sha256Hex(c.Value)
		if err := a.store.w.exec(`DELETE FROM sessions WHERE hash = ?`, hashed); err != nil {
			b.api().Error(w, r, fmt.Errorf("end a session: %w", err))
			return
		}
		a.mu.Lock()
		delete(a.sessions, hashed)
		a.mu.Unlock()
		a.endStreams(func(st *stream) bool { return st.cred.hash == hashed })
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || a.secure})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
