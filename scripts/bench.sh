#!/usr/bin/env bash
# make bench: every performance target, each measured against its peer in the
# same run. See README.md "Benchmarks".
#
# make bench-smoke (bench.sh --smoke) is the quick mode: every benchmark once,
# on small sizes, with no target enforced. It proves that each benchmark still
# runs; CI runs it after the tests. Its figures mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

smoke=false
case ${1:-} in
--smoke) smoke=true ;;
"") ;;
*) die "usage: bash scripts/bench.sh [--smoke]" ;;
esac

# quick FULL... -- QUICK...: the arguments of the mode this run is in.
args=()
quick() {
	local full=() seen=false a
	args=()
	for a in "$@"; do
		if [ "$a" = -- ]; then seen=true; continue; fi
		if $seen; then args+=("$a"); else full+=("$a"); fi
	done
	$smoke || args=("${full[@]}")
}

# gobench PKG NAME FILTER [go test flags...]: one Go benchmark, its report lines only.
# In smoke mode it runs once (-benchtime 1x) with -short, which shrinks its sizes.
gobench() {
	local pkg=$1 name=$2 filter=$3
	shift 3
	local flags=("$@")
	if $smoke; then flags=(-benchtime 1x -short); fi
	go test "$pkg" -run '^$' -bench "^$name\$" -count 1 -timeout 20m -v "${flags[@]}" >"$dir/bench.out" 2>&1 || {
		cat "$dir/bench.out"
		die "benchmark $name failed"
	}
	grep -E "$filter|^ok" "$dir/bench.out"
}

dir=$(mktemp -d /tmp/bettertest-bench.XXXXXX)
trap 'stop_worker; rm -rf "$dir"' EXIT

step "1. round trip of 'echo hi': worker API vs docker run --rm (target ratio <= 0.8)"
gobench ./agent BenchmarkEchoRoundTrip '^Benchmark' -benchtime 30x

start_worker "$dir" --max-parallel 2

step "2. output latency, container write -> Python client (target p99 < 50 ms)"
quick --count 300 -- --count 20
PYTHONPATH=python python3 python/bench/latency.py --worker "$WORKER_URL" --token-file "$dir/token" "${args[@]}"

step "3. throughput of 200 MB of stdout to the Python client (targets >= 200 MB/s, worker RSS growth < 32 MB)"
quick -- --size 8388608
PYTHONPATH=python python3 python/bench/throughput.py --worker "$WORKER_URL" --token-file "$dir/token" --worker-pid "$WORKER_PID" "${args[@]}"

step "4. enrollment: bettertest vs the same Ansible playbook on twin fresh hosts (targets: no-op < 1 s and <= 0.25x Ansible; fresh beyond packages < 5 s)"
if ! command -v ansible-playbook >/dev/null; then
	echo "installing Debian's ansible (the benchmark's peer)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ansible >/dev/null
fi
gobench ./enroll BenchmarkEnrollVsAnsible '^Benchmark' -benchtime 1x

step "5. enrollment of 4 hosts in parallel vs 1 (target: within 1.5x)"
gobench ./enroll BenchmarkEnrollFourHostsInParallel '^Benchmark' -benchtime 1x

step "6. a cached build with a 100 MB output vs the same build uncached (target: cached < 50 ms end to end)"
quick -- --size 1000000 --count 2
PYTHONPATH=python python3 python/bench/cache.py --worker "$WORKER_URL" --token-file "$dir/token" "${args[@]}"

step "7. artifact upload and download over loopback, Python library vs curl (targets >= 300 MB/s; a second upload sends no content)"
quick -- --size 8000000 --rounds 1
PYTHONPATH=python python3 python/bench/artifacts.py --worker "$WORKER_URL" --token-file "$dir/token" "${args[@]}"

step "8. the boss: trigger -> first output line of the first task, against the same pipedef run by hand (target < 1 s)"
gobench ./boss BenchmarkTriggerToFirstOutput 'bench_test' -benchtime 5x

step "9. the boss's event fan-out: 100 subscribers on /api/events against 1, during 2000 lines of output (target p99 < 50 ms)"
gobench ./boss BenchmarkEventFanOut 'bench_test' -benchtime 1x

step "10. the UI's page weight: HTML + app.js + app.css of each page (target < 60 KB)"
gobench ./boss BenchmarkUIPageWeight 'ui_bench_test' -benchtime 1x

step "11. the UI's time to first byte of each page, against GET /api/workers (target < 20 ms)"
gobench ./boss BenchmarkUITimeToFirstByte 'ui_bench_test' -benchtime 1x

step "12. the UI's latency from a line of output to the DOM in Chromium, against /api/events (target p99 < 50 ms)"
gobench ./boss BenchmarkUIEventToDOM 'ui_bench_test' -benchtime 1x

step "13. the UI's task page with 100,000 lines of output, against one with 10: server GET, Chromium load, load more"
gobench ./boss BenchmarkUITaskPage100kLines 'ui_bench_test' -benchtime 1x

step "14. flaky tests: the flaky page with 100,000 recorded test-case results, against GET /api/workers (target < 50 ms)"
gobench ./boss BenchmarkFlakyPage100kResults 'flaky_bench_test' -benchtime 1x

step "15. the boss with users: GET /api/runs with a session cookie and with an API token, against a boss without users (target p99 <= 1.2x)"
gobench ./boss BenchmarkAuthenticatedRuns 'auth_bench_test' -benchtime 1x

step "16. the sandbox: a pipedef's start sandboxed (bwrap, setpriv) against the same interpreter started directly (target < 50 ms more)"
gobench ./boss BenchmarkSandboxStart 'sandbox_bench_test' -benchtime 1x

step "17. the worker under attack: /health p99 while a fork bomb and a memory hog run in two slots, against it idle (target <= 2x)"
gobench ./agent BenchmarkHealthUnderAttack '^Benchmark|bench_test' -benchtime 1x

step "18. the echo round trip with the worker's limits on against off (target <= 1.1x)"
gobench ./agent BenchmarkEchoLimits '^Benchmark|bench_test' -benchtime 30x

step "19. enrollment: a no-op re-enroll through a jump host against a direct one (target: within 1.5x)"
gobench ./enroll BenchmarkNoOpThroughAJumpHost '^Benchmark' -benchtime 1x

step "20. a fleet from an inventory: no-op re-enroll of 8 hosts vs 1 (target within 1.5x) and vs Ansible over the same inventory (target <= 0.25x)"
gobench ./enroll BenchmarkEnrollInventory '^Benchmark' -benchtime 1x
step "21. a cached image build (s.image) through the library, against docker build -q with a warm cache (target < 100 ms)"
quick -- --count 3
PYTHONPATH=python python3 python/bench/image_cache.py --worker "$WORKER_URL" --token-file "$dir/token" "${args[@]}"

step "22. a service's readiness (its health_status event) to the run's first output line, against the service's start (target < 1 s)"
gobench ./agent BenchmarkServiceReadyToFirstOutput '^Benchmark|bench_test' -benchtime 5x

step "23. the boss's memory: peak RSS growth while a task writes 1 GiB and a pipedef 200 MiB without a newline, against its idle RSS (target < 64 MiB each)"
gobench ./boss BenchmarkBossMemoryUnderOutput 'bench_test' -benchtime 1x

step "24. a fleet's load: 20 runs over 10 workers with 100 UI tabs and 100 /api/events clients, against 1 run and 1 client: event p99 (target < 50 ms) and the boss's CPU per event"
gobench ./boss BenchmarkFleetLoad 'bench_test' -benchtime 1x

step "25. a history of 100,000 runs: the pipelines page and GET /api/runs?pipeline=NAME, against GET /api/workers (target p99 < 20 ms)"
gobench ./boss BenchmarkRunHistory 'history_bench_test' -benchtime 1x

step "26. the UI's task page with 10,000 test cases: a live tests event to the DOM in Chromium against /api/events, and the server's GET against GET /api/workers (targets p99 < 50 ms)"
gobench ./boss BenchmarkUITaskPage10kCases 'ui_cases_bench_test' -benchtime 1x

step "27. an artifact of 500 MiB, a file and a directory, downloaded through the boss against straight from the worker (targets >= 0.5x, the boss's RSS growth < 32 MiB)"
gobench ./boss BenchmarkArtifactDownload 'artifacts_bench_test' -benchtime 1x

step "28. a real project's pipeline (lib/pq), cold and warm, against the same commands run one after another with docker run (targets: warm <= 0.5x, cold <= 1.0x)"
quick --warm 3 -- --warm 1 --keep-image
PYTHONPATH=python python3 python/bench/real_project.py --project "$(bash scripts/get-example-pq.sh)" "${args[@]}"

if $smoke; then
	step "bench-smoke: every benchmark ran (quick mode: small sizes, figures not comparable with make bench)"
fi
