"""What bt.local leaves out: .git, .gitignore's patterns as git reads them, and exclude=."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
import unittest
from pathlib import Path

from bettertest import SourceFilter, local, pack

# A .gitignore such as real projects have, and the files of a checkout.
GITIGNORE = """# build output
/build/
*.log
!keep.log
node_modules/
**/cache/**
doc/*.html
\\#hash
"""

FILES = [
    "README.md",
    "app.log",
    "keep.log",
    "build/out.bin",
    "src/build/gen.go",
    "src/main.go",
    "src/debug.log",
    "src/node_modules/x.js",
    "node_modules/y.js",
    "deep/a/cache/b/c.txt",
    "doc/index.html",
    "doc/api/index.html",
    "#hash",
    "web/.gitignore",
    "web/dist.js",
    "web/app.js",
]


def packed_names(root: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    out = io.BytesIO()
    pack(root, out, skip=SourceFilter(str(root), exclude).skip)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        return sorted(m.name.removeprefix("artifact/") for m in tar.getmembers() if m.isfile())


class SourceFilterTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name) / "repo"
        for name in FILES:
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("dist.js\n" if name == "web/.gitignore" else name)
        (self.root / ".gitignore").write_text(GITIGNORE)
        git = ["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)

    def test_what_git_tracks_is_what_is_packed(self) -> None:
        # git itself says which files the .gitignore files leave out.
        tracked = subprocess.run(["git", "-C", str(self.root), "ls-files"], check=True, capture_output=True, text=True)
        self.assertEqual(packed_names(self.root), sorted(tracked.stdout.split()))
        self.assertEqual(
            packed_names(self.root),
            sorted([
                ".gitignore", "README.md", "doc/api/index.html", "keep.log", "src/build/gen.go",
                "src/main.go", "web/.gitignore", "web/app.js",
            ]),
        )

    def test_git_and_exclude(self) -> None:
        self.assertTrue((self.root / ".git").is_dir())
        self.assertEqual(
            packed_names(self.root, ("*.md", "/web/", "!README.md")),
            sorted([".gitignore", "README.md", "doc/api/index.html", "keep.log", "src/build/gen.go", "src/main.go"]),
        )

    def test_a_worktree_is_the_same_artifact_as_its_commit(self) -> None:
        # A worktree's .git is a file that names the worktree: it must not change the id.
        first = io.BytesIO()
        pack(self.root, first, skip=SourceFilter(str(self.root)).skip)
        (self.root / "stray.log").write_text("a build's leftovers")
        os.rename(self.root / ".git", self.root.parent / "git-dir")
        (self.root / ".git").write_text("gitdir: /data/repos/app.git/worktrees/app-2\n")
        second = io.BytesIO()
        pack(self.root, second, skip=SourceFilter(str(self.root)).skip)
        self.assertEqual(first.getvalue(), second.getvalue())

    def test_local_takes_a_list(self) -> None:
        self.assertEqual(local("x", exclude=["*.log"]).exclude, ("*.log",))
        with self.assertRaises(TypeError) as cm:
            local("x", exclude="*.log")  # type: ignore[arg-type]
        self.assertEqual(str(cm.exception), "exclude='*.log': give a list of patterns, e.g. exclude=['*.log']")


if __name__ == "__main__":
    unittest.main()
