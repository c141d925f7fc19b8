"""Artifact throughput over loopback: upload and download of a ~500 MB artifact through the library.

The peer is curl doing the same PUT and GET against the same worker in the same run, streaming
from and to a file as the library does. Each is measured --rounds times, the library and curl
taking turns at going first (the disk's write-back makes whoever follows a big write slower);
the medians are compared. Every upload sends content the worker does not have yet: a copy of the
archive with one byte of file data changed. Downloads write a new file; the library also checks
the content's sha256 as it arrives. Each artifact is downloaded twice, and the two are reported
apart: the first download just after the upload is much slower for curl and the library alike
(on the worker's side: it is so with --data-dir on tmpfs too), the second shows what the
transfer itself costs.

Last, the same local file is "uploaded" again through Worker.upload_local: it packs the file,
finds that the worker already has that content, and sends none of it (target: 0 bytes).

The benchmark's own files (the random data, its archive, the downloads) live in memory
(/dev/shm by default): this machine's disk writes ~300 MB/s, and several GB of write-back
would otherwise set the pace of whoever runs next. The worker's store is on its --data-dir, as
always, for the library and curl alike.

Usage: python3 bench/artifacts.py --worker URL --token-file PATH [--size BYTES] [--rounds N] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bettertest  # noqa: E402

MB = 1_000_000


def write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MB)
            f.write(os.urandom(n))
            left -= n


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def variant(archive: str, path: str, n: int) -> str:
    """A copy of the archive with byte n of its file's data flipped; returns its hex digest."""
    shutil.copyfile(archive, path)
    fd = os.open(path, os.O_RDWR)
    try:
        offset = 512 + n  # the archive of one file: a 512-byte header, then the file's data
        (byte,) = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([byte ^ 0xFF]), offset)
    finally:
        os.close(fd)
    return sha256_of(path)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def curl(*args: str) -> None:
    proc = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"artifacts: curl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()} {proc.stdout.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", metavar="URL", required=True)
    parser.add_argument("--token-file", metavar="PATH", required=True)
    parser.add_argument("--size", type=int, default=500 * MB, help="bytes of the file packed into the artifact")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--tmp", metavar="DIR", default="/dev/shm",
        help="where the benchmark's own files go (default /dev/shm: in memory, so that writing them back to disk "
        "does not compete with the worker's store and blur the figures)",
    )
    args = parser.parse_args()
    worker = bettertest.connect(["--worker", args.worker, "--token-file", args.token_file])
    token = bettertest.read_token_file(args.token_file)
    url = worker.url + "/artifacts/"

    with tempfile.TemporaryDirectory(prefix="bettertest-bench-", dir=args.tmp) as tmp:
        # curl reads the header from a 0600 file, so the token never appears in an argument.
        header = os.path.join(tmp, "auth")
        fd = os.open(header, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"Authorization: Bearer {token}\n")

        source = os.path.join(tmp, "data")
        write_random(source, args.size)
        archive = os.path.join(tmp, "data.tar")
        with open(archive, "wb") as f:
            pack_s = timed(lambda: bettertest.pack(source, f))
        size = os.path.getsize(archive)
        times: dict[str, list[float]] = {}
        upload = os.path.join(tmp, "upload.tar")
        back = os.path.join(tmp, "back.tar")

        def record(name: str, call: Callable[[], object]) -> None:
            times.setdefault(name, []).append(timed(call))

        for round_ in range(args.rounds):
            for who in (("library", "curl") if round_ % 2 == 0 else ("curl", "library")):
                digest = variant(archive, upload, 2 * round_ + (who == "curl"))
                # Each artifact is fetched twice: just after its upload, and again once the worker
                # has read it (see the module's docstring).
                for get in ("first get", "get"):
                    if who == "library":
                        if get == "first get":
                            record("put", lambda: worker.upload_artifact(upload, "sha256:" + digest))
                        record(get, lambda: worker.download_artifact("sha256:" + digest, back))
                    else:
                        if get == "first get":
                            record("curl put", lambda: curl(
                                "-H", f"@{header}", "-H", "Content-Type: application/x-tar", "-T", upload,
                                "-o", os.devnull, url + digest))
                        record("curl " + get, lambda: curl("-H", f"@{header}", "-o", back, url + digest))
                    if sha256_of(back) != digest:
                        sys.exit(f"artifacts: the {who} download does not match what was uploaded")
                    os.unlink(back)
        os.unlink(upload)

        first = bettertest.Packed("sha256:" + sha256_of(archive), size)
        if not worker.has_artifact(first.id):
            worker.upload_artifact(archive, first.id)
        start = time.perf_counter()
        again = worker.upload_local(source)
        again_s = time.perf_counter() - start
        if again.id != first.id:
            sys.exit(f"artifacts: packing the same file twice gave {first.id} and {again.id}")

    rate = {name: size / MB / statistics.median(values) for name, values in times.items()}
    print(
        f"artifacts: {size / MB:.0f} MB over loopback, median of {args.rounds} (target >= 300 MB/s): "
        f"upload {rate['put']:.0f} MB/s (curl {rate['curl put']:.0f} MB/s: {rate['put'] / rate['curl put']:.2f}x curl); "
        f"download with sha256 check {rate['get']:.0f} MB/s (curl {rate['curl get']:.0f} MB/s: "
        f"{rate['get'] / rate['curl get']:.2f}x curl); the first download just after the upload "
        f"{rate['first get']:.0f} MB/s (curl {rate['curl first get']:.0f} MB/s: "
        f"{rate['first get'] / rate['curl first get']:.2f}x curl)"
    )
    print(
        f"artifacts: second upload of the same content: {again.sent} bytes of content sent (target 0); "
        f"{again_s * 1000:.0f} ms, nearly all of it packing and hashing locally "
        f"(packing alone: {size / MB / pack_s:.0f} MB/s)"
    )


if __name__ == "__main__":
    main()
