"""Services, dependency caches and waiting for a slot, through pipedefs on a real worker and Docker."""

from __future__ import annotations

import datetime
import subprocess

from tests.test_pipeline import PipedefTestCase, output

SERVICE = """
    import bettertest as bt

    db = bt.service(
        image="bettertest/base:bookworm",
        command="exec perl -MIO::Socket::INET -e '$|=1; $s=IO::Socket::INET->new(LocalPort=>7000,Listen=>5,ReuseAddr=>1) or die; "
                "print qq(listening\\\\n); while($c=$s->accept){print $c qq(hello\\\\n); close $c}'",
        ready=7000,
    )
    p = bt.pipeline("services")
    with p.stage("test") as s:
        s.test("talk", image="bettertest/base:bookworm", command="bash -c 'exec 3<>/dev/tcp/db/7000 && cat <&3'",
               services={"db": db})
"""

CACHE = """
    import bettertest as bt

    p = bt.pipeline("caches")
    with p.stage("test") as s:
        s.build("fill", image="bettertest/base:bookworm", command="cat /cache/n 2>/dev/null; echo x >> /cache/n; mkdir /out",
                outputs=["/out"], caches={"/cache": "deps"})
"""


class ServiceTest(PipedefTestCase):
    def test_a_test_reaches_its_service_by_name_and_sees_its_output(self) -> None:
        run = self.run_pipedef(SERVICE)
        self.assertEqual((run.code, run.stderr), (0, ""))
        self.assertEqual(output(run.events, "talk"), "[db] listening\nhello\n")


class ServiceImageTest(PipedefTestCase):
    def test_a_service_runs_in_an_image_the_pipeline_builds_in_the_same_stage(self) -> None:
        self.write("ci/Dockerfile", "FROM bettertest/base:bookworm\nRUN echo 'built for the service' > /motd\n")
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("services")
            with p.stage("test") as s:
                img = s.image("ci", context=bt.local("ci"))
                db = bt.service(image=img, command="cat /motd; exec sleep 600", ready="test -e /motd")
                s.test("talk", image="bettertest/base:bookworm", command="echo hello", services={"db": db})
        """)
        key = next(e["key"] for e in run.events if e["event"] in ("task_uncached", "task_cached"))
        self.addCleanup(subprocess.run, ["docker", "rmi", "-f", "bettertest/built:" + key.removeprefix("sha256:")], capture_output=True)
        self.assertEqual((run.code, run.stderr), (0, ""))
        self.assertEqual(output(run.events, "talk"), "[db] built for the service\nhello\n")
        # The time it waited for the service's image is not the test's.
        talk = next(e for e in run.events if e["event"] == "task_end" and e["task"] == "talk")
        self.assertEqual(talk["waited_for"], ["the image of service db"], talk)
        self.assertGreater(talk["waited_ms"], 0, talk)

    def test_a_failed_image_fails_the_tests_whose_service_runs_in_it(self) -> None:
        self.write("ci/Dockerfile", "FROM bettertest/no-such:image\n")
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("services")
            with p.stage("test") as s:
                img = s.image("ci", context=bt.local("ci"))
                s.test("talk", image="bettertest/base:bookworm", command="true", services={"db": bt.service(image=img, ready=7000)})
        """)
        self.assertEqual(run.code, 1)
        ends = {e["task"]: e["error"] for e in run.events if e["event"] == "task_end"}
        self.assertEqual(ends["talk"], "the image 'ci' of its service 'db' failed: there is no image to run it in")


class CacheTest(PipedefTestCase):
    def test_a_dependency_cache_persists_and_is_not_part_of_a_builds_key(self) -> None:
        one = self.run_pipedef(CACHE)
        self.assertEqual((one.code, one.stderr, output(one.events, "fill")), (0, "", ""))
        # The cache changed, the build's key did not: it is answered from the cache.
        two = self.run_pipedef(CACHE)
        self.assertEqual([e["event"] for e in two.events if e.get("task") == "fill"],
                         ["task_start", "task_cached", "task_artifact", "task_end"])
        # A build that misses sees what the last one left.
        three = self.run_pipedef(CACHE.replace("mkdir /out", "mkdir /out # again"))
        self.assertEqual(output(three.events, "fill"), "x\n")


    def test_the_time_waiting_for_a_cache_another_run_holds_is_not_the_tasks(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("caches")
            with p.stage("test") as s:
                for name in ("one", "two"):
                    s.test(name, image="bettertest/base:bookworm", command="sleep 2", caches={"/cache": "shared"})
        """)
        self.assertEqual((run.code, run.stderr), (0, ""))
        ends = {e["task"]: e for e in run.events if e["event"] == "task_end"}
        # One held the cache while the other waited for it, with a slot to spare.
        waited = sorted(e["waited_for"] for e in ends.values())
        self.assertEqual(waited, [[], ["the cache shared"]], ends)
        name, end = next((n, e) for n, e in ends.items() if e["waited_for"])
        self.assertGreaterEqual(end["waited_ms"], 1000, ends)
        # Its duration is the rest of its time, not all of it.
        start = next(e for e in run.events if e["event"] == "task_start" and e["task"] == name)
        stamp = lambda e: datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() * 1000
        self.assertAlmostEqual(stamp(end) - stamp(start), end["waited_ms"] + end["duration_ms"], delta=25)


class SlotTest(PipedefTestCase):
    worker_args = ("--max-parallel", "1")

    def test_the_time_waiting_for_a_slot_is_not_the_tasks(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("slots")
            with p.stage("test") as s:
                s.test("first", image="bettertest/base:bookworm", command="sleep 1")
                s.test("second", image="bettertest/base:bookworm", command="sleep 1")
        """)
        self.assertEqual(run.code, 0)
        ends = {e["task"]: e for e in run.events if e["event"] == "task_end"}
        starts = {e["task"]: e for e in run.events if e["event"] == "task_start"}
        waited = [name for name, e in ends.items() if e["waited_ms"] > 0]
        self.assertEqual(len(waited), 1, ends)
        end = ends[waited[0]]
        # It waited while the other slept, and its duration is the rest of its time, not all of it.
        self.assertGreaterEqual(end["waited_ms"], 1000, ends)
        self.assertEqual(end["waited_for"], ["a slot"], ends)
        stamp = lambda e: datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() * 1000
        self.assertAlmostEqual(stamp(end) - stamp(starts[waited[0]]), end["waited_ms"] + end["duration_ms"], delta=25)


class PlainPathTest(PipedefTestCase):
    def test_a_plain_path_as_an_input_says_to_use_local(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("paths")
            with p.stage("test") as s:
                s.test("t", image="bettertest/base:bookworm", command="true", inputs={"/src": "src"})
        """)
        self.assertEqual(run.code, 1)
        self.assertIn(
            "bettertest.errors.PipelineError: the input /src of the task 't' is the string 'src', which is not an artifact id: "
            "to send a local file or directory, pass bt.local('src')\n",
            run.stderr,
        )
