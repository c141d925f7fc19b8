"""Output throughput: 200 MiB (--size) of container stdout through the worker and the client library.

The rate is taken from the first output chunk to the end of the run, so container start-up is
left out. Three peers are measured in the same run:
- docker exec: the same command run by the Docker CLI in an idle container of the same image,
  its stdout read from a pipe: what the Docker engine itself delivers on this machine;
- raw HTTP: the same run read as body bytes, without SSE or JSON parsing: the ceiling that the
  worker and Docker set;
- library alone: the bytes of that raw run, recorded and replayed from memory through the
  library's own event handling (parse_sse, JSON, on_output): what the client can take.
With --worker-pid, the worker's memory growth during the library run is reported: its peak-RSS
counter is reset (/proc/PID/clear_refs), then VmRSS before is compared with VmHWM after.

Usage: python3 bench/throughput.py --worker URL --token-file PATH [--worker-pid PID] [--size BYTES]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bettertest  # noqa: E402

IMAGE = "bettertest/base:bookworm"
MIB = 1024 * 1024


def command(size: int) -> str:
    """A command that writes size bytes of 'x' to stdout."""
    return f"head -c {size} /dev/zero | tr '\\0' x"


def proc_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def library_run(worker: bettertest.Worker, size: int) -> tuple[int, float]:
    received = 0
    first = 0.0

    def on_output(stream: str, text: str) -> None:
        nonlocal received, first
        if not received:
            first = time.perf_counter()
        received += len(text)

    result = worker.run(IMAGE, command(size), on_output=on_output, capture=False)
    end = time.perf_counter()
    if not result.ok:
        sys.exit(f"throughput: the run failed with exit code {result.exit_code}: {result.error}")
    return received, end - first


def raw_run(url: str, token: str, size: int) -> tuple[float, list[bytes]]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    body = json.dumps({"image": IMAGE, "command": command(size)})
    conn.request("POST", "/run", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"throughput: raw run refused: HTTP {resp.status} {resp.read()!r}")
    first = 0.0
    chunks = []
    while chunk := resp.read1(65536):
        if not first and b"event: output" in chunk:
            first = time.perf_counter()
        chunks.append(chunk)
    end = time.perf_counter()
    conn.close()
    return end - first, chunks


def docker_run(size: int) -> float:
    container = subprocess.run(
        ["docker", "run", "-d", "-i", "--init", "--log-driver", "none", IMAGE, "sh", "-c", "read -r _"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    try:
        proc = subprocess.Popen(["docker", "exec", container, "sh", "-c", command(size)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        first = 0.0
        received = 0
        while chunk := proc.stdout.read1(1 << 20):
            if not first:
                first = time.perf_counter()
            received += len(chunk)
        end = time.perf_counter()
        if proc.wait() != 0 or received != size:
            sys.exit(f"throughput: docker exec peer failed: exit {proc.returncode}, {received} bytes")
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    return end - first


def replay_run(worker: bettertest.Worker, chunks: list[bytes], size: int) -> float:
    received = 0

    def on_output(stream: str, text: str) -> None:
        nonlocal received
        received += len(text)

    start = time.perf_counter()
    # The library's own stream handling, without the network.
    worker.follow(chunks, on_output=on_output, capture=False)
    seconds = time.perf_counter() - start
    if received != size:
        sys.exit(f"throughput: replay delivered {received} bytes, expected {size}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", metavar="URL", required=True)
    parser.add_argument("--token-file", metavar="PATH", required=True)
    parser.add_argument("--worker-pid", type=int, help="the worker's process id, to report its memory growth")
    parser.add_argument("--size", type=int, default=200 * MIB, help="bytes of output")
    args = parser.parse_args()
    size = args.size
    worker = bettertest.connect(["--worker", args.worker, "--token-file", args.token_file])

    if args.worker_pid:
        # Reset the peak so that VmHWM afterwards is the peak of this run alone.
        with open(f"/proc/{args.worker_pid}/clear_refs", "w") as f:
            f.write("5")
        rss_before = proc_status_kib(args.worker_pid, "VmRSS")
    received, seconds = library_run(worker, size)
    if args.worker_pid:
        growth_mib = (proc_status_kib(args.worker_pid, "VmHWM") - rss_before) / 1024
    if received != size:
        sys.exit(f"throughput: expected {size} bytes, received {received}")
    rate = size / MIB / seconds
    raw_seconds, chunks = raw_run(args.worker, bettertest.read_token_file(args.token_file), size)
    raw_rate = size / MIB / raw_seconds
    replay_rate = size / MIB / replay_run(worker, chunks, size)
    docker_rate = size / MIB / docker_run(size)
    line = (
        f"throughput: {rate:.0f} MiB/s from worker through library (target >= 200), "
        f"{rate / docker_rate:.2f}x the docker exec CLI peer at {docker_rate:.0f} MiB/s; "
        f"raw HTTP peer {raw_rate:.0f} MiB/s (library at {rate / raw_rate:.2f}x); "
        f"library alone on the recorded stream {replay_rate:.0f} MiB/s"
    )
    if args.worker_pid:
        line += f"; worker RSS growth {growth_mib:.1f} MiB (target < 32)"
    print(line)


if __name__ == "__main__":
    main()
