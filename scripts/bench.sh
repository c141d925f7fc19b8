#!/usr/bin/env bash
# make bench: every performance target, each measured against its peer in the
# same run. See README.md "Benchmarks".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "1. round trip of 'echo hi': worker API vs docker run --rm (target ratio <= 0.8)"
go test ./agent -run '^$' -bench BenchmarkEchoRoundTrip -benchtime 30x -count 1 | grep -E '^Benchmark|^ok'

dir=$(mktemp -d /tmp/bettertest-bench.XXXXXX)
trap 'stop_worker; rm -rf "$dir"' EXIT
start_worker "$dir" --max-parallel 2

step "2. output latency, container write -> Python client (target p99 < 50 ms)"
PYTHONPATH=python python3 python/bench/latency.py --worker "$WORKER_URL" --token-file "$dir/token"

step "3. throughput of 200 MB of stdout to the Python client (targets >= 200 MB/s, worker RSS growth < 32 MB)"
PYTHONPATH=python python3 python/bench/throughput.py --worker "$WORKER_URL" --token-file "$dir/token" --worker-pid "$WORKER_PID"
