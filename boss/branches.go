package boss

import (
	"fmt"
	"regexp"
	"strings"
)

// branchFilter is a list of GitHub filter patterns, with GitHub's meaning
// (docs.github.com, "Workflow syntax for GitHub Actions", filter pattern
// cheat sheet): `*` matches within a path segment, `**` across them, `?` and
// `+` make the character before them optional or repeatable, `[a-z0-9]` is
// one character of a set, `\` escapes, and a pattern that starts with `!`
// excludes what the patterns before it included. The last pattern that
// matches a branch decides.
type branchFilter []branchPattern

type branchPattern struct {
	text   string
	negate bool
	re     *regexp.Regexp
}

// defaultBranches matches every branch, feature/login and release/1.x too.
const defaultBranches = "**"

func parseBranchFilter(patterns []string) (branchFilter, error) {
	if len(patterns) == 0 {
		patterns = []string{defaultBranches}
	}
	var f branchFilter
	for i, p := range patterns {
		bp := branchPattern{text: p}
		body, neg := strings.CutPrefix(p, "!")
		bp.negate = neg
		if neg && i == 0 {
			return nil, fmt.Errorf("branch=%s: a pattern that starts with ! excludes branches the patterns before it include, and there are none: put branch=** (every branch) before it", p)
		}
		re, err := branchRegexp(body)
		if err != nil {
			return nil, fmt.Errorf("branch=%s: %v", p, err)
		}
		bp.re = re
		f = append(f, bp)
	}
	return f, nil
}

// match says whether the patterns select branch.
func (f branchFilter) match(branch string) bool {
	in := false
	for _, p := range f {
		if p.re.MatchString(branch) {
			in = !p.negate
		}
	}
	return in
}

func branchRegexp(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, fmt.Errorf("the pattern is empty: give a branch name or a pattern such as release/**")
	}
	var b strings.Builder
	b.WriteString(`^`)
	rs := []rune(p)
	prevChar := false // the last thing written is one character, which ? and + may follow
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; c {
		case '*':
			if i+1 < len(rs) && rs[i+1] == '*' {
				b.WriteString(`.*`)
				i++
			} else {
				b.WriteString(`[^/]*`)
			}
			prevChar = false
		case '?', '+':
			if !prevChar {
				return nil, fmt.Errorf("%c at %d follows no character: it makes the character before it optional (?) or repeatable (+); write \\%c for the character itself", c, i+1, c)
			}
			b.WriteRune(c)
			prevChar = false
		case '[':
			end := i + 1
			for end < len(rs) && rs[end] != ']' {
				end++
			}
			if end == len(rs) || end == i+1 {
				return nil, fmt.Errorf("[ at %d opens a set of characters that is empty or never closed with ]", i+1)
			}
			set := string(rs[i+1 : end])
			for _, r := range set {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
					return nil, fmt.Errorf("[%s] may hold only letters, digits and ranges such as a-z or 0-9", set)
				}
			}
			b.WriteString(`[` + set + `]`)
			i = end
			prevChar = true
		case '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("\\ at the end escapes nothing")
			}
			i++
			b.WriteString(regexp.QuoteMeta(string(rs[i])))
			prevChar = true
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
			prevChar = true
		}
	}
	b.WriteString(`$`)
	return regexp.Compile(b.String())
}
