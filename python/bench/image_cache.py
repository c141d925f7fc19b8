"""A cached image build's wall time through the library (target < 100 ms).

A pipeline with one stage builds an image (``s.image``) whose key the worker knows, and waits for
it: packing the context, asking the worker whether it has it, and the worker finding the tag.
The peer, measured in the same run, is ``docker build -q`` of the same context with Docker's own
layer cache warm (what a maintainer would run by hand).

Usage: python3 bench/image_cache.py --worker URL --token-file PATH [--count N]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bettertest  # noqa: E402

IMAGE = "bettertest/base:bookworm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()
    worker = bettertest.Worker(args.worker, token=bettertest.read_token_file(args.token_file))
    with tempfile.TemporaryDirectory() as ctx:
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM {IMAGE}\nCOPY tool.sh /usr/local/bin/tool.sh\nRUN chmod +x /usr/local/bin/tool.sh\n")
        with open(os.path.join(ctx, "tool.sh"), "w") as f:
            f.write("#!/bin/sh\necho tool\n")
        context = bettertest.local(ctx)
        tags: set[str] = set()

        def via_library() -> float:
            p = bettertest.Pipeline("bench-image", worker, bettertest.JsonlReporter(io.BytesIO()))
            t0 = time.perf_counter()
            with p.stage("image") as s:
                img = s.image("ci", context=context)
            elapsed = time.perf_counter() - t0
            p.end()
            if img.status != "passed":
                sys.exit(f"the image build failed: {img.error}")
            tags.add(img.tag or "")
            return elapsed

        def via_docker() -> float:
            t0 = time.perf_counter()
            subprocess.run(["docker", "build", "-q", ctx], check=True, capture_output=True)
            return time.perf_counter() - t0

        first = via_library()  # builds it: not measured
        via_docker()
        library, docker = [], []
        try:
            for _ in range(args.count):
                library.append(via_library())
                docker.append(via_docker())
        finally:
            subprocess.run(["docker", "rmi", "-f", *sorted(tags - {""})], capture_output=True)
    lib_ms, docker_ms = statistics.median(library) * 1000, statistics.median(docker) * 1000
    print(f"cached image build, median of {args.count}: library {lib_ms:.1f} ms (target < 100 ms), "
          f"docker build -q with a warm cache {docker_ms:.1f} ms, ratio {lib_ms / docker_ms:.2f} "
          f"(first build {first * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
