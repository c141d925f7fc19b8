#!/usr/bin/env bash
# make example-pq: the real project's pipeline (python/examples/pq.py, lib/pq
# with a PostgreSQL service) on a worker of its own, twice: the first run builds
# the image (once per Docker engine: about a minute) and the test binaries; the
# second finds them in the worker's cache and only tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

dir=$(mktemp -d /tmp/bettertest-example-pq.XXXXXX)
trap 'stop_worker; rm -rf "$dir"' EXIT

step "lib/pq through the Go module proxy (scripts/get-example-pq.sh)"
project=$(bash scripts/get-example-pq.sh)
echo "$project"

start_worker "$dir" --max-parallel 4
for run in first second; do
	step "the $run run: python3 python/examples/pq.py --worker $WORKER_URL --token-file $dir/token --project $project"
	PYTHONPATH=python python3 python/examples/pq.py --worker "$WORKER_URL" --token-file "$dir/token" --project "$project"
done
