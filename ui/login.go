package ui

import "strings"

// Login is what the login page shows.
type Login struct {
	Name   string // the name typed last time
	Next   string // where to go once logged in: a path on the boss
	Notice string // why the last try failed
}

// LoginPage is the whole login page: a plain form that works without
// scripts, and none are loaded.
func LoginPage(l Login) string {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	b.WriteString("<title>Log in · bettertest</title>\n<link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"/ui/app.css\">\n</head>\n<body>\n")
	b.WriteString("<header id=\"nav\"><span class=\"brand\">bettertest</span></header>\n")
	b.WriteString(`<div id="notice" role="status">` + esc(l.Notice) + "</div>\n")
	b.WriteString("<main id=\"main\">\n<h1>Log in</h1>\n<form class=\"login\" method=\"post\" action=\"/login\">\n")
	b.WriteString(`<input type="hidden" name="next" value="` + esc(l.Next) + "\">\n")
	b.WriteString(`<label>Name <input name="name" autocomplete="username" required autofocus value="` + esc(l.Name) + "\"></label>\n")
	b.WriteString("<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n")
	b.WriteString("<button>Log in</button>\n</form>\n</main>\n</body>\n</html>\n")
	return b.String()
}
