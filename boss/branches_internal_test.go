package boss

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The examples are GitHub's own, from the filter pattern cheat sheet
// (docs.github.com, "Workflow syntax for GitHub Actions"), and branch names
// real repositories use.
func TestBranchFilterHasGitHubsMeaning(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		patterns []string
		branch   string
		want     bool
	}{
		{nil, "main", true},
		{nil, "feature/login", true},
		{nil, "release/1.x", true},
		{nil, "dependabot/npm_and_yarn/lodash-4.17.21", true},
		{[]string{"*"}, "main", true},
		{[]string{"*"}, "feature/login", false},
		{[]string{"**"}, "feature/login", true},
		{[]string{"main"}, "main", true},
		{[]string{"main"}, "mainline", false},
		{[]string{"feature/*"}, "feature/login", true},
		{[]string{"feature/*"}, "feature/login/oauth", false},
		{[]string{"feature/**"}, "feature/login/oauth", true},
		{[]string{"release/**"}, "release/1.x", true},
		{[]string{"release/**"}, "releases/1.x", false},
		{[]string{"release/v[0-9].[0-9]"}, "release/v1.2", true},
		{[]string{"release/v[0-9].[0-9]"}, "release/v1x2", false},
		{[]string{"[CB]at"}, "Bat", true},
		{[]string{"Octoc?at"}, "Octoat", true},
		{[]string{"Octoc?at"}, "Octocat", true},
		{[]string{"Octoc+at"}, "Octoccat", true},
		{[]string{"Octoc+at"}, "Octoat", false},
		{[]string{`v2\+`}, "v2+", true},
		{[]string{"*feature"}, "mona-feature", true},
		{[]string{"**", "!release/**"}, "release/1.x", false},
		{[]string{"**", "!release/**"}, "feature/login", true},
		{[]string{"release/**", "!release/**-alpha", "release/2.0-alpha"}, "release/1.0-alpha", false},
		{[]string{"release/**", "!release/**-alpha", "release/2.0-alpha"}, "release/2.0-alpha", true},
	} {
		f, err := parseBranchFilter(c.patterns)
		if err != nil {
			t.Fatalf("%q: %v", c.patterns, err)
		}
		if got := f.match(c.branch); got != c.want {
			t.Errorf("%q matches %s: %v, want %v", c.patterns, c.branch, got, c.want)
		}
	}
}

func TestBranchFilterRefusesWhatGitHubWouldNotMean(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, want string
	}{
		{"!wip", "branch=!wip: a pattern that starts with ! excludes branches the patterns before it include, and there are none: put branch=** (every branch) before it"},
		{"", "branch=: the pattern is empty: give a branch name or a pattern such as release/**"},
		{"+x", `branch=+x: + at 1 follows no character: it makes the character before it optional (?) or repeatable (+); write \+ for the character itself`},
		{"v[0-9", "branch=v[0-9: [ at 2 opens a set of characters that is empty or never closed with ]"},
		{"v[.]", "branch=v[.]: [.] may hold only letters, digits and ranges such as a-z or 0-9"},
	} {
		_, err := parseBranchFilter([]string{c.pattern})
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: %v, want %s", c.pattern, err, c.want)
		}
	}
	rc, err := ParseRepo("app=https://github.com/o/app.git,pipedef=ci.py,branch=**,branch=!wip/**")
	if err != nil || len(rc.Branches) != 2 || rc.Branches[0] != "**" || rc.Branches[1] != "!wip/**" {
		t.Fatalf("ParseRepo: %+v %v", rc, err)
	}
}

func TestDescriptionsAreCutAt140Characters(t *testing.T) {
	t.Parallel()
	ascii := strings.Repeat("a", 140)
	umlauts := strings.Repeat("ü", 200) // 2 bytes each: a cut at 137 bytes would split one
	for _, c := range []struct{ in, want string }{
		{ascii, ascii},
		{ascii + "b", strings.Repeat("a", 139) + "…"},
		{strings.Repeat("ü", 140), strings.Repeat("ü", 140)},
		{umlauts, strings.Repeat("ü", 139) + "…"},
		{"failed: 🦀" + umlauts, "failed: 🦀" + strings.Repeat("ü", 130) + "…"},
	} {
		got := cutDescription(c.in)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("cutDescription(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
