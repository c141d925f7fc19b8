"""An example pipeline that fails on purpose: one test fails, so its stage fails and the next stage
is skipped. The boss shows it red; `make demo` loads it beside pipeline.py."""

import bettertest as bt

BASE = "bettertest/base:bookworm"

p = bt.pipeline("broken")
with p.stage("test") as s:
    s.test("adds", image=BASE, command='test "$((2 + 2))" -eq 4 && echo "2 + 2 = 4"')
    s.test("multiplies", image=BASE, command='echo "2 * 2 = $((2 * 3))"; echo "expected 4" >&2; exit 1')
with p.stage("deploy") as s:
    s.test("ship", image=BASE, command="echo shipping")
