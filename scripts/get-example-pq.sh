#!/usr/bin/env bash
# The real project of python/examples/pq.py, fetched through the Go module proxy
# and never committed here: lib/pq (PostgreSQL's Go driver) and go-junit-report
# (the JUnit writer its tests report through), at pinned versions.
#
#   bash scripts/get-example-pq.sh [DIR]   prints DIR, which then holds
#     DIR/src       github.com/lib/pq v1.10.9, the project under test
#     DIR/junit     github.com/jstemmer/go-junit-report/v2 v2.1.0, built by the pipeline
#     DIR/goproxy   a file module proxy with what building go-junit-report needs
#                   besides its own source (the go.mod of its test dependency),
#                   so that nothing in a container reaches for the network
#
# DIR defaults to ~/.cache/bettertest/example-pq. Idempotent: a DIR already made
# for these versions is printed at once; otherwise it is made beside and renamed
# into place. `go mod download` checks every module against the checksum database.
set -euo pipefail

PQ=github.com/lib/pq@v1.10.9
JUNIT=github.com/jstemmer/go-junit-report/v2@v2.1.0
CMP=github.com/google/go-cmp@v0.5.8 # go-junit-report's only requirement
stamp="$PQ $JUNIT $CMP"

dir=${1:-$HOME/.cache/bettertest/example-pq}
if [ "$(cat "$dir/VERSIONS" 2>/dev/null)" = "$stamp" ]; then
	echo "$dir"
	exit 0
fi
command -v go >/dev/null || { echo "get-example-pq: go is not installed: install Go (https://go.dev/dl) and run this again" >&2; exit 1; }

mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
# A module cache of its own, so the copies below come from exactly these downloads.
GOMODCACHE=$tmp/modcache GOFLAGS=-modcacherw go mod download -json "$PQ" "$JUNIT" "$CMP" >"$tmp/download.json" ||
	{ echo "get-example-pq: go mod download $PQ $JUNIT $CMP failed (above)" >&2; exit 1; }
moddir() { python3 -c 'import json, sys
dec, text, i = json.JSONDecoder(), open(sys.argv[1]).read(), 0
while i < len(text):
    mod, i = dec.raw_decode(text, i)
    i += len(text[i:]) - len(text[i:].lstrip())
    if mod["Path"] + "@" + mod["Version"] == sys.argv[2]:
        print(mod[sys.argv[3]])' "$tmp/download.json" "$1" "$2"; }
cp -R "$(moddir "$PQ" Dir)" "$tmp/src"
cp -R "$(moddir "$JUNIT" Dir)" "$tmp/junit"
mkdir -p "$tmp/goproxy/github.com/google/go-cmp/@v"
cp "$(moddir "$CMP" Info)" "$(moddir "$CMP" GoMod)" "$tmp/goproxy/github.com/google/go-cmp/@v/"
echo "${CMP#*@}" >"$tmp/goproxy/github.com/google/go-cmp/@v/list"
chmod -R u+w "$tmp/modcache" && rm -rf "$tmp/modcache" "$tmp/download.json"
echo "$stamp" >"$tmp/VERSIONS"

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
