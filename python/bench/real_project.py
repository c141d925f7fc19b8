"""A real project's pipeline (python/examples/pq.py: lib/pq) against the same commands run one
after another with ``docker run`` (targets: warm <= 0.5x, cold <= 1.0x).

Cold: no image (both sides' images removed, so neither builds on the other's layers) and no
build or dependency cache (a fresh worker; fresh Go caches for the peer). Warm: the image and the
builds cached (the same worker again; for the peer, Docker's layer cache and the Go caches of its
cold run). Both sides run the pipedef's own commands (its constants, read from the file): ours
is the pipedef run as a user runs it, to its exit; the peer builds the image (``docker build``),
builds go-junit-report and the test binaries, starts PostgreSQL once and waits for its health
check (Docker's event), runs the three shards against it one after another, then ``go vet``.

Usage: python3 bench/real_project.py --project DIR [--warm N] [--keep-image]
(DIR: what scripts/get-example-pq.sh prints; --keep-image, the quick mode, does not remove the
images before the cold runs, so only the build caches are cold.)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

PYTHON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, PYTHON)

from tests.workerproc import WorkerProcess  # noqa: E402

PIPEDEF = os.path.join(PYTHON, "examples", "pq.py")
CONTEXT = os.path.join(PYTHON, "examples", "pq")
PEER_IMAGE = "bettertest-bench/pq-peer:latest"
# lib/pq's tests mostly wait on their server: a worker for such runs takes more than one per CPU
# (README, Queueing), here all four tasks of the test stage at once.
WORKER_FLAGS = ("--max-parallel", "4")


def constants(path: str) -> dict[str, Any]:
    """The pipedef's module-level constants (names in capitals given a literal), without running it."""
    found = {}
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.isupper():
                try:
                    found[name] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return found


def docker(*args: str, capture: bool = True, check: bool = True) -> str:
    run = subprocess.run(["docker", *args], capture_output=capture, text=True)
    if check and run.returncode != 0:
        sys.exit(f"docker {' '.join(args)}: exit {run.returncode}\n{run.stdout or ''}{run.stderr or ''}")
    return run.stdout.strip() if capture else ""


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = f()
    return time.perf_counter() - t0, value


def via_pipeline(worker: WorkerProcess, project: str) -> tuple[str, bool]:
    """Runs the pipedef to its end; returns the tag of the image it ran in, and whether it was built before."""
    run = subprocess.run(
        [sys.executable, PIPEDEF, "--worker", worker.url, "--token-file", worker.token_file, "--project", project, "--report", "jsonl"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYTHON},
    )
    events = [json.loads(line) for line in run.stdout.splitlines()]
    if run.returncode != 0:
        failed = [f"{e['task']}: {e['error']}" for e in events if e["event"] == "task_end" and e["status"] != "passed"]
        sys.exit(f"the pipeline failed (exit {run.returncode}): {failed}\n{run.stderr}")
    image = next(e for e in events if e.get("task") == "image" and e["event"] in ("task_cached", "task_uncached"))
    return "bettertest/built:" + image["key"].removeprefix("sha256:"), image["event"] == "task_cached"


def via_docker_run(c: dict[str, Any], project: str, caches: str, no_cache: bool) -> None:
    """The pipedef's commands, one after another, with docker build and docker run."""
    docker("build", *(["--no-cache"] if no_cache else []), "-q", "-t", PEER_IMAGE, CONTEXT)
    with tempfile.TemporaryDirectory() as out:
        go_caches = [a for path, name in c["GO_CACHES"].items() for a in ("-v", f"{os.path.join(caches, name)}:{path}")]
        env = [a for k, v in c["JUNIT_ENV"].items() for a in ("-e", f"{k}={v}")]
        docker("run", "--rm", *go_caches, *env, "-v", f"{project}/junit:/src:ro", "-v", f"{project}/goproxy:/goproxy:ro",
               "-v", f"{out}/junit:/out", "-w", "/src", PEER_IMAGE, "sh", "-c", c["JUNIT"])
        docker("run", "--rm", *go_caches, "-v", f"{project}/src:/src:ro", "-v", f"{out}/tests:/out", "-w", "/src",
               PEER_IMAGE, "sh", "-c", c["COMPILE"])
        network = docker("network", "create", f"bench-pq-{os.getpid()}")
        try:
            since = f"{time.time() - 1:.3f}"
            db = docker("run", "-d", "--rm", "--network", network, "--network-alias", "db", "--health-cmd", c["DB_READY"],
                        "--health-interval", "250ms", PEER_IMAGE, "sh", "-c", c["DB_COMMAND"])
            try:
                # Docker's health_status event, as the worker waits for a service: no polling.
                events = subprocess.Popen(["docker", "events", "--since", since, "--filter", f"container={db}",
                                           "--filter", "event=health_status", "--format", "{{.Status}}"],
                                          stdout=subprocess.PIPE, text=True)
                assert events.stdout is not None
                for line in events.stdout:
                    if line.strip() == "health_status: healthy":
                        break
                events.kill()
                events.wait()
                env = [a for k, v in c["TEST_ENV"].items() for a in ("-e", f"{k}={v}")]
                for i in range(c["SHARDS"]):
                    results = os.path.join(out, f"results-{i}")
                    os.mkdir(results)
                    os.chmod(results, 0o777)
                    command = c["SHARD"].replace("INDEX", str(i)).replace("SHARDS", str(c["SHARDS"]))
                    # A failed case fails the shard, not the benchmark: it times the runs (lib/pq has
                    # a test or two that time out on a busy machine; the pipeline retries them).
                    docker("run", "--rm", "--network", network, "--user", c["TEST_USER"], *env, "-v", f"{project}/src:/src:ro",
                           "-v", f"{out}/tests:/tests:ro", "-v", f"{out}/junit:/tools:ro", "-v", f"{results}:/results",
                           PEER_IMAGE, "sh", "-c", command, check=False)
                if not all(os.listdir(os.path.join(out, f"results-{i}")) for i in range(c["SHARDS"])):
                    sys.exit("a shard run with docker run wrote no JUnit results")
            finally:
                docker("rm", "-f", db)
        finally:
            docker("network", "rm", network)
        docker("run", "--rm", *go_caches, "-v", f"{project}/src:/src:ro", "-w", "/src", PEER_IMAGE, "sh", "-c", c["VET"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, help="the directory scripts/get-example-pq.sh prints")
    parser.add_argument("--warm", type=int, default=3, help="warm rounds (their median is reported)")
    parser.add_argument("--keep-image", action="store_true", help="quick mode: do not remove the images before the cold runs")
    args = parser.parse_args()
    c = constants(PIPEDEF)
    ours: set[str] = set()

    def remove_images() -> None:
        if not args.keep_image:
            subprocess.run(["docker", "rmi", "-f", PEER_IMAGE, *ours], capture_output=True)

    caches = tempfile.mkdtemp(prefix="bench-pq-gocache.")
    worker = WorkerProcess(*WORKER_FLAGS)
    try:
        # Cold. An image of ours left by an earlier run (the suite's, say) answers as cached:
        # then its tag is known, it is removed, and the cold run is done again on a new worker.
        remove_images()
        peer_cold, _ = timed(lambda: via_docker_run(c, project=args.project, caches=caches, no_cache=not args.keep_image))
        remove_images()
        cold, (tag, built_before) = timed(lambda: via_pipeline(worker, args.project))
        ours.add(tag)
        if built_before and not args.keep_image:
            worker.stop()
            worker = WorkerProcess(*WORKER_FLAGS)
            remove_images()
            cold, _ = timed(lambda: via_pipeline(worker, args.project))
        # Warm: the worker that ran it; the peer with its image and Go caches.
        warm, peer_warm = [], []
        for _ in range(args.warm):
            warm.append(timed(lambda: via_pipeline(worker, args.project))[0])
            peer_warm.append(timed(lambda: via_docker_run(c, project=args.project, caches=caches, no_cache=False))[0])
    finally:
        worker.stop()
        subprocess.run(["docker", "rmi", "-f", PEER_IMAGE], capture_output=True)
        shutil.rmtree(caches, ignore_errors=True)
    w, pw = statistics.median(warm), statistics.median(peer_warm)
    what = "no build cache, image kept (quick mode)" if args.keep_image else "no image, no build cache"
    print(f"cold ({what}): pipeline {cold:.1f} s, docker run one after another {peer_cold:.1f} s, ratio {cold / peer_cold:.2f} (target <= 1.0)")
    print(f"warm (image and builds cached), median of {args.warm}: pipeline {w:.1f} s, docker run {pw:.1f} s, "
          f"ratio {w / pw:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
