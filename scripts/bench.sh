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

step "4. enrollment: bettertest vs the same Ansible playbook on twin fresh hosts (targets: no-op < 1 s and <= 0.25x Ansible; fresh beyond packages < 5 s)"
if ! command -v ansible-playbook >/dev/null; then
	echo "installing Debian's ansible (the benchmark's peer)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ansible >/dev/null
fi
go test ./enroll -run '^$' -bench BenchmarkEnrollVsAnsible -benchtime 1x -count 1 -timeout 20m | grep -E '^Benchmark|^ok|FAIL'

step "5. enrollment of 4 hosts in parallel vs 1 (target: within 1.5x)"
go test ./enroll -run '^$' -bench BenchmarkEnrollFourHostsInParallel -benchtime 1x -count 1 -timeout 20m | grep -E '^Benchmark|^ok|FAIL'

step "6. a cached build with a 100 MB output vs the same build uncached (target: cached < 50 ms end to end)"
PYTHONPATH=python python3 python/bench/cache.py --worker "$WORKER_URL" --token-file "$dir/token"

step "7. artifact upload and download over loopback, Python library vs curl (targets >= 300 MB/s; a second upload sends no content)"
PYTHONPATH=python python3 python/bench/artifacts.py --worker "$WORKER_URL" --token-file "$dir/token"

step "8. the boss: trigger -> first output line of the first task, against the same pipedef run by hand (target < 1 s)"
go test ./boss -run '^$' -bench BenchmarkTriggerToFirstOutput -benchtime 5x -count 1 -v | grep -E 'bench_test|^ok|FAIL' | tail -n 2

step "9. the boss's event fan-out: 100 subscribers on /api/events against 1, during 2000 lines of output (target p99 < 50 ms)"
go test ./boss -run '^$' -bench BenchmarkEventFanOut -benchtime 1x -count 1 -v | grep -E 'bench_test|^ok|FAIL'

step "10. the UI's page weight: HTML + app.js + app.css of each page (target < 60 KB)"
go test ./boss -run '^$' -bench BenchmarkUIPageWeight -benchtime 1x -count 1 -v | grep -E 'ui_bench_test|^ok|FAIL'

step "11. the UI's time to first byte of each page, against GET /api/workers (target < 20 ms)"
go test ./boss -run '^$' -bench BenchmarkUITimeToFirstByte -benchtime 1x -count 1 -v | grep -E 'ui_bench_test|^ok|FAIL'

step "12. the UI's latency from a line of output to the DOM in Chromium, against /api/events (target p99 < 50 ms)"
go test ./boss -run '^$' -bench BenchmarkUIEventToDOM -benchtime 1x -count 1 -v | grep -E 'ui_bench_test|^ok|FAIL'

step "13. the UI's task page with 100,000 lines of output, against one with 10: server GET, Chromium load, load more"
go test ./boss -run '^$' -bench BenchmarkUITaskPage100kLines -benchtime 1x -count 1 -v | grep -E 'ui_bench_test|^ok|FAIL'

step "14. flaky tests: the flaky page with 100,000 recorded test-case results, against GET /api/workers (target < 50 ms)"
go test ./boss -run '^$' -bench BenchmarkFlakyPage100kResults -benchtime 1x -count 1 -timeout 20m -v | grep -E 'flaky_bench_test|^ok|FAIL'
