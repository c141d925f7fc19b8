"""The example pipeline: build hello.c once, then test the program and lint the source in parallel.

Run it with::

    python3 python/examples/pipeline.py --worker http://127.0.0.1:9009 --token-file PATH [--report jsonl]

Run it twice: the second time the build comes from the worker's cache. Change src/hello.c and the
report says why it was built again (``input /src changed``).
"""

import os

import bettertest as bt

CC = "bettertest/cc:bookworm"  # Debian bookworm with gcc
BASE = "bettertest/base:bookworm"

# bt.local takes a path relative to the current directory; this one is next to this file, wherever it runs from.
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")

p = bt.pipeline("hello")
with p.stage("build") as s:
    app = s.build(
        "compile",
        image=CC,
        command="mkdir -p /out && cc -O2 -o /out/hello /src/hello.c",
        inputs={"/src": bt.local(SRC)},
        outputs=["/out"],
    )
with p.stage("test") as s:
    s.test("runs", image=BASE, command="/app/out/hello", inputs={"/app": app})
    s.test(
        "lint",
        image=BASE,
        command="! grep -n '[[:blank:]]$' /src/*.c || { echo 'trailing whitespace (above)' >&2; exit 1; }",
        inputs={"/src": bt.local(SRC)},
    )
