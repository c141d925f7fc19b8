#!/usr/bin/env bash
# make.sh COMMIT: writes history.db here, the history that the boss built at
# COMMIT keeps after a few real runs of the example pipelines, and in api/
# what that boss answered about them, so that the store's test can check that
# a newer boss opens an older history and reads the same. See README.md.
set -euo pipefail
[ $# = 1 ] || { echo "usage: bash boss/testdata/history/make.sh COMMIT" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
dir=$(mktemp -d /tmp/bettertest-history.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		if kill -TERM "$p" 2>/dev/null; then wait "$p" || true; fi
	done
	rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$dir/src"
git -C "$repo" archive "$1" | tar -x -C "$dir/src"
(cd "$dir/src" && CGO_ENABLED=0 go build -o "$dir/bettertest" ./cmd/bettertest)
chmod 755 "$dir" # pipedefs run sandboxed as nobody
examples=$dir/src/python/examples
cat >"$examples/slow.py" <<'PY'
import bettertest as bt
p = bt.pipeline("slow")
with p.stage("wait") as s:
    s.test("sleeps", image="bettertest/base:bookworm", command="echo waiting; sleep 600")
PY

# start NAME ARGS...: starts the binary, waits for its "listening" line (an
# event on its stderr pipe), and sets URL.
start() {
	local name=$1 line fd
	shift
	mkfifo "$dir/$name.err"
	"$dir/bettertest" "$@" 2>"$dir/$name.err" &
	pids+=($!)
	exec {fd}<"$dir/$name.err"
	URL=
	while IFS= read -r line <&"$fd"; do
		case $line in *"msg=listening "*) URL=http://$(sed -n 's/.* addr=\([^ ]*\).*/\1/p' <<<"$line"); break ;; esac
	done
	[ -n "$URL" ] || { echo "$name did not start" >&2; exit 1; }
	cat <&"$fd" >"$dir/$name.log" &
}

(umask 077 && head -c 32 /dev/urandom | base64 >"$dir/token")
start worker worker --listen 127.0.0.1:0 --token-file "$dir/token" --data-dir "$dir/worker"
worker=$URL
start boss boss --listen 127.0.0.1:0 --data-dir "$dir/boss" --workers-dir "$dir/workers" \
	--worker "w0=$worker" --worker-token-file "w0=$dir/token" \
	--pipedef "$examples/pipeline.py" --pipedef "$examples/broken.py" --pipedef "$examples/flaky.py" --pipedef "$examples/slow.py"
boss=$URL
boss_pid=${pids[-1]}

# run PIPELINE: triggers a run and returns once it ended (its event stream ends with it).
run() {
	local id
	id=$(curl -sf -X POST "$boss/api/pipelines/$1/runs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
	curl -sfN "$boss/api/events?run=$id" >/dev/null
	echo "run $id of $1 ended"
}
run pipeline
run pipeline # its build comes from the worker's cache
run broken
run flaky
run flaky
curl -sS --fail-with-body -X POST "$boss/api/quarantine" -H "Content-Type: application/json" -d '{"pipeline": "broken", "test": "multiplies", "quarantined": true}' >/dev/null

# A run cancelled once its task writes its first line.
id=$(curl -sf -X POST "$boss/api/pipelines/slow/runs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
grep -m1 -q '^event: output' < <(curl -sfN "$boss/api/events?run=$id")
curl -sf -X POST "$boss/api/runs/$id/cancel" >/dev/null
curl -sfN "$boss/api/events?run=$id" >/dev/null
echo "run $id of slow cancelled"

# What the boss answers about its history: the store's test reads the same.
rm -rf "$here/api" && mkdir "$here/api"
answer() { curl -sSf "$boss$2" >"$here/api/$1.json"; }
answer runs /api/runs
answer runs-of-flaky '/api/runs?pipeline=flaky'
answer runs-of-pipeline-limit-1 '/api/runs?pipeline=pipeline&limit=1'
answer run-1 /api/runs/1
answer run-3 /api/runs/3
answer run-6 /api/runs/6
answer tests-4 /api/runs/4/tests
answer tests-5-of-unit '/api/runs/5/tests?task=unit'
answer log-1-runs /api/runs/1/tasks/runs/log
answer log-6-sleeps /api/runs/6/tasks/sleeps/log
answer log-3-multiplies /api/runs/3/tasks/multiplies/log
answer log-3 /api/runs/3/log

kill -TERM "$boss_pid" && wait "$boss_pid" # the boss checkpoints its WAL as it stops
cp "$dir/boss/history.db" "$here/history.db"
echo "wrote $here/history.db and $here/api"
