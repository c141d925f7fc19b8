#!/usr/bin/env bash
# The main job (make demo): start a worker on loopback with a fresh token and
# run the example pipedef against it, then stop the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

dir=$(mktemp -d /tmp/bettertest-demo.XXXXXX)
trap 'stop_worker; rm -rf "$dir"' EXIT

step "starting a worker (token in $dir/token)"
start_worker "$dir"
echo "worker listening at $WORKER_URL"

step "running the pipedef python/examples/hello.py against it"
# The library is used from this checkout; `pip install ./python` installs it for good.
PYTHONPATH=python python3 python/examples/hello.py --worker "$WORKER_URL" --token-file "$dir/token" ||
	die "the pipedef failed with status $?"
printf '\n%spipedef passed%s\n' "$GREEN" "$RESET"

step "the worker's log"
cat "$dir/worker.log"
