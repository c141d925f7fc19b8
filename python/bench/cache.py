"""The build cache: a build with a 100 MB output, run once uncached and then answered from the cache.

The build writes 100 MB of random bytes to /out. A nonce in its env makes its key new in every
run of the benchmark, so the first call really builds (the worker runs the container and packs
and stores the output); the calls after it are answered from the cache: nothing runs and nothing
moves but the events. Wall time is measured end to end around the library call, as a pipedef
sees it: Worker.run with cache=True, and a whole one-build pipeline stage (its thread, report and
wait included). The peer is the same build uncached, in the same run.

Usage: python3 bench/cache.py --worker URL --token-file PATH [--count N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bettertest  # noqa: E402

IMAGE = "bettertest/base:bookworm"


class Quiet:
    """A reporter that keeps nothing: the benchmark times the pipeline, not a terminal."""

    def emit(self, event: bettertest.Event) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", metavar="URL", required=True)
    parser.add_argument("--token-file", metavar="PATH", required=True)
    parser.add_argument("--count", type=int, default=10, help="cached calls to take the median of")
    parser.add_argument("--size", type=int, default=100_000_000, help="bytes of the build's output")
    args = parser.parse_args()
    command = f"mkdir /out && head -c {args.size} /dev/urandom > /out/big"
    worker = bettertest.connect(["--worker", args.worker, "--token-file", args.token_file])
    env = {"NONCE": secrets.token_hex(8)}

    def build() -> tuple[float, bettertest.Result]:
        start = time.perf_counter()
        result = worker.run(IMAGE, command, env=env, outputs=["/out"], cache=True, name="bench/cache",
                            on_output=lambda stream, text: None)
        return time.perf_counter() - start, result

    uncached_s, first = build()
    if not first.ok or first.cached:
        sys.exit(f"cache: the first build did not build: exit code {first.exit_code}, cached {first.cached}, {first.error}")
    cached_s: list[float] = []
    for _ in range(args.count):
        seconds, result = build()
        if not result.cached or result.artifacts != first.artifacts:
            sys.exit(f"cache: a repeated build was not answered from the cache: {result}")
        cached_s.append(seconds)

    def stage() -> float:
        p = bettertest.Pipeline("bench", worker, Quiet())
        start = time.perf_counter()
        with p.stage("build") as s:
            task = s.build("cache", image=IMAGE, command=command, env=env, outputs=["/out"])
        seconds = time.perf_counter() - start
        p.end()
        if not task.cached:
            sys.exit(f"cache: the pipeline's build was not answered from the cache: {task.status}, {task.error}")
        return seconds

    stage_s = [stage() for _ in range(args.count)]
    cached = statistics.median(cached_s)
    size = sum(a.size for a in first.artifacts)
    print(
        f"cache: build with a {size / 1e6:.0f} MB output: uncached {uncached_s * 1000:.0f} ms, cached "
        f"{cached * 1000:.1f} ms (median of {len(cached_s)}, max {max(cached_s) * 1000:.1f} ms; target < 50 ms), "
        f"cached/uncached {cached / uncached_s:.4f}; as a one-build pipeline stage, cached "
        f"{statistics.median(stage_s) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
