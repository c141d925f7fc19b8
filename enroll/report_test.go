package enroll

import (
	"strings"
	"testing"

	"github.com/bettertest/bettertest/provision"
)

func TestRecapTable(t *testing.T) {
	var out strings.Builder
	r := &reporter{out: &out}
	r.table([]hostResult{
		{host: "web1.example.com", recap: provision.Recap{OK: 13, Skipped: 1}},
		{host: "db", recap: provision.Recap{OK: 4, Changed: 2, Failed: 1}, failed: true},
		{host: "gone", recap: provision.Recap{Failed: 1}, unreachable: true, failed: true},
	})
	const want = "RECAP\n" +
		"web1.example.com : ok=13  changed=0   unreachable=0   failed=0   skipped=1\n" +
		"db               : ok=4   changed=2   unreachable=0   failed=1   skipped=0\n" +
		"gone             : ok=0   changed=0   unreachable=1   failed=0   skipped=0\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	(&reporter{out: &out, json: true}).table([]hostResult{{host: "x"}})
	if out.String() != "" {
		t.Fatalf("--json: the recap is in each host's last line, not a table: %q", out.String())
	}
}
