"""The in-tree build backend: what `pip install ./python` installs."""

from __future__ import annotations

import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_build"))

import bettertest_build  # noqa: E402


class BuildWheelTest(unittest.TestCase):
    def test_wheel_holds_the_package_and_its_metadata(self) -> None:
        with tempfile.TemporaryDirectory() as out:
            name = bettertest_build.build_wheel(out)
            self.assertEqual(name, "bettertest-0.1.0-py3-none-any.whl")
            with zipfile.ZipFile(Path(out, name)) as zf:
                self.assertEqual(
                    zf.namelist(),
                    [
                        "bettertest/__init__.py",
                        "bettertest/_artifacts.py",
                        "bettertest/_connect.py",
                        "bettertest/_ignore.py",
                        "bettertest/_pipeline.py",
                        "bettertest/_report.py",
                        "bettertest/_results.py",
                        "bettertest/_secrets.py",
                        "bettertest/_sse.py",
                        "bettertest/_worker.py",
                        "bettertest/errors.py",
                        "bettertest/py.typed",
                        "bettertest-0.1.0.dist-info/METADATA",
                        "bettertest-0.1.0.dist-info/WHEEL",
                        "bettertest-0.1.0.dist-info/RECORD",
                    ],
                )
                self.assertEqual(zf.read("bettertest/_sse.py"), (ROOT / "bettertest" / "_sse.py").read_bytes())
                self.assertEqual(
                    zf.read("bettertest-0.1.0.dist-info/WHEEL"),
                    b"Wheel-Version: 1.0\nGenerator: bettertest_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
                )
                metadata = zf.read("bettertest-0.1.0.dist-info/METADATA").decode()
                self.assertEqual(
                    metadata.split("\n\n", 1)[0],
                    "Metadata-Version: 2.1\nName: bettertest\nVersion: 0.1.0\n"
                    "Summary: Client library for bettertest pipedefs: run commands in containers on a bettertest worker.\n"
                    "Requires-Python: >=3.11\nDescription-Content-Type: text/markdown",
                )
                record = zf.read("bettertest-0.1.0.dist-info/RECORD").decode().splitlines()
                self.assertEqual([line.split(",")[0] for line in record], zf.namelist())

    def test_builds_are_identical(self) -> None:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            first = Path(a, bettertest_build.build_wheel(a)).read_bytes()
            second = Path(b, bettertest_build.build_wheel(b)).read_bytes()
        self.assertEqual(first, second)


if __name__ == "__main__":
    unittest.main()
