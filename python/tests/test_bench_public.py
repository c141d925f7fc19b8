"""The benchmarks in python/bench use the library's public API only.

A benchmark that reaches into a private name (``worker._follow``) breaks silently when the
internals change; ``make bench-smoke`` catches a benchmark that no longer runs, and this test
catches one that would only keep running by accident.
"""

from __future__ import annotations

import ast
import pathlib
import unittest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def private_uses(source: str) -> list[str]:
    """The private names a script uses: ``x._name`` and imports from ``bettertest._module``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bettertest._"):
            found.append(f"line {node.lineno}: from {node.module}")
    return found


class BenchmarksUsePublicAPITest(unittest.TestCase):
    def test_no_benchmark_uses_a_private_name(self) -> None:
        scripts = sorted(BENCH.glob("*.py"))
        self.assertEqual([p.name for p in scripts], ["artifacts.py", "cache.py", "image_cache.py", "latency.py", "real_project.py", "throughput.py"])
        for script in scripts:
            with self.subTest(script=script.name):
                self.assertEqual(private_uses(script.read_text()), [])

    def test_the_check_finds_a_private_use(self) -> None:
        source = "import bettertest\nfrom bettertest._worker import Worker\nworker._follow(chunks)\n"
        self.assertEqual(private_uses(source), ["line 2: from bettertest._worker", "line 3: ._follow"])


if __name__ == "__main__":
    unittest.main()
