"""Images built by the pipeline, on a real worker and Docker."""

from __future__ import annotations

import subprocess
import textwrap
import time
from typing import Any

from tests.test_pipeline import PipedefTestCase, end, first, out, pipeline_end, shape, start
from tests.workerproc import IMAGE

PIPEDEF = """
    import bettertest as bt

    p = bt.pipeline("images")
    with p.stage("test") as s:
        img = s.image("ci", context=bt.local("ci"), dockerfile="docker/Dockerfile", build_args={"GREETING": "hi"})
        s.test("greet", image=img, command="cat /greeting")
"""


class ImageTest(PipedefTestCase):
    def expected(self, built: list[dict[str, Any]], cached: int) -> list[dict[str, Any]]:
        context = str(self.dir / "ci")
        return [
            {"event": "pipeline_start", "pipeline": "images", "worker": self.proc.url},
            {"event": "stage_start", "stage": "test"},
            start("test", "ci", "image", f"docker build -f docker/Dockerfile {context}", image="docker/Dockerfile"),
            *built,
            start("test", "greet", "test", "cat /greeting", image="(the image 'ci')"),
            out("test", "greet", "hi from ci\n"),
            {"event": "task_attempt", "stage": "test", "task": "greet", "attempt": 1, "status": "passed", "exit_code": 0, "error": None},
            end("test", "greet", "test", "passed", 0),
            {"event": "stage_end", "stage": "test", "status": "passed"},
            pipeline_end("images", "passed", passed=2, failed=0, skipped=0, cached=cached),
        ]

    def test_an_image_from_a_dockerfile_is_built_once_and_runs_later_tasks(self) -> None:
        # A comment of its own makes the key this test's alone: an image an interrupted run of it
        # left behind is not found in the cache.
        self.write("ci/docker/Dockerfile", f"# {time.time_ns()}\nFROM {IMAGE}\nARG GREETING\nRUN echo \"$GREETING from ci\" > /greeting\n")
        one = self.run_pipedef(PIPEDEF)
        self.assertEqual((one.code, one.stderr), (0, ""))
        progress = "".join(e["text"] for e in one.events if e["event"] == "task_output" and e["task"] == "ci")
        self.assertIn("Step 3/4 : RUN echo \"$GREETING from ci\" > /greeting\n", progress)
        events = [e for e in shape(one.events) if not (e["event"] == "task_output" and e["task"] == "ci")]
        uncached = {"event": "task_uncached", "stage": "test", "task": "ci", "key": "KEY", "reason": "not built on this worker yet"}
        self.assertEqual(events, self.expected([uncached, end("test", "ci", "image", "passed", 0)], cached=0))
        tag = "bettertest/built:" + first(one.events, "task_uncached")["key"].removeprefix("sha256:")
        self.addCleanup(subprocess.run, ["docker", "rmi", "-f", tag], capture_output=True, check=True)

        # Again: nothing is built.
        two = self.run_pipedef(PIPEDEF)
        cached = [{"event": "task_cached", "stage": "test", "task": "ci", "key": "KEY"},
                  end("test", "ci", "image", "passed", None, cached=True)]
        self.assertEqual(shape(two.events), self.expected(cached, cached=1))
        self.assertEqual(first(two.events, "task_cached")["key"], first(one.events, "task_uncached")["key"])

    def test_a_failed_image_fails_the_tasks_that_run_in_it(self) -> None:
        self.write("ci/Dockerfile", "FROM bettertest/no-such:image\n")
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("images")
            with p.stage("test") as s:
                img = s.image("ci", context=bt.local("ci"))
                s.test("greet", image=img, command="true")
        """)
        self.assertEqual(run.code, 1)
        ends = {e["task"]: e["error"] for e in run.events if e["event"] == "task_end"}
        self.assertEqual(ends, {
            "ci": f"the worker at {self.proc.url} could not build the image: Dockerfile: FROM bettertest/no-such:image: "
                  "the image is not on this worker, and the worker builds without pulling: build it first (an image of an earlier stage), or docker load it there",
            "greet": "its image 'ci' failed: there is no image to run it in",
        })
