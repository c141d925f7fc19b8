"""Output latency: how long a line takes from the container's `date` to the pipedef's on_output.

The container prints `date +%s%N` COUNT times, 10 ms apart; the client stamps each complete line
with time.time_ns() when it arrives (the container shares the host's clock). The peer is the same
shell loop run locally through a plain pipe, measured the same way in the same run.

Usage: python3 bench/latency.py --worker URL --token-file PATH [--worker-pid PID] [--count N]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bettertest  # noqa: E402

IMAGE = "bettertest/base:bookworm"


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def worker_latencies(worker: bettertest.Worker, command: str) -> list[float]:
    latencies_ms: list[float] = []
    partial: list[str] = []

    def on_output(stream: str, text: str) -> None:
        now = time.time_ns()
        if stream != "stdout":
            sys.stderr.write(text)
            return
        # Chunks are not line-aligned: keep the unfinished tail for the next chunk.
        lines = text.split("\n")
        if len(lines) == 1:
            partial.append(text)
            return
        lines[0] = "".join(partial) + lines[0]
        partial.clear()
        if lines[-1]:
            partial.append(lines[-1])
        for line in lines[:-1]:
            latencies_ms.append((now - int(line)) / 1e6)

    result = worker.run(IMAGE, command, on_output=on_output, capture=False)
    if not result.ok:
        sys.exit(f"latency: the run failed with exit code {result.exit_code}: {result.error}")
    return latencies_ms


def local_latencies(command: str) -> list[float]:
    latencies_ms: list[float] = []
    with subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            latencies_ms.append((time.time_ns() - int(line)) / 1e6)
    return latencies_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", metavar="URL", required=True)
    parser.add_argument("--token-file", metavar="PATH", required=True)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    worker = bettertest.connect(["--worker", args.worker, "--token-file", args.token_file])
    command = f"for i in $(seq {args.count}); do date +%s%N; sleep 0.01; done"

    remote = sorted(worker_latencies(worker, command))
    local = sorted(local_latencies(command))
    if len(remote) != args.count:
        sys.exit(f"latency: expected {args.count} lines from the worker, got {len(remote)}")
    p50, p99 = percentile(remote, 50), percentile(remote, 99)
    local_p50, local_p99 = percentile(local, 50), percentile(local, 99)
    print(
        f"latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(remote)} lines (target p99 < 50 ms); "
        f"local pipe peer p50 {local_p50:.2f} ms, p99 {local_p99:.2f} ms; "
        f"p99 {p99 / max(local_p99, 1e-3):.1f}x the peer"
    )


if __name__ == "__main__":
    main()
