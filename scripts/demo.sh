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

# The library is used from this checkout; `pip install ./python` installs it for good.
pipedef() { PYTHONPATH=python python3 python/examples/pipeline.py --worker "$WORKER_URL" --token-file "$dir/token"; }

step "running the pipeline python/examples/pipeline.py: build hello.c, then test it"
pipedef || die "the pipeline failed with status $?"

step "running it again: nothing changed, so the build comes from the worker's cache"
pipedef || die "the pipeline failed with status $?"
printf '\n%spipeline passed twice%s\n' "$GREEN" "$RESET"

step "the worker's log"
cat "$dir/worker.log"
