"""The client against a real `bettertest worker` process and a real Docker engine.

Needs ../bin/bettertest (`make build`) and the image bettertest/base:bookworm
(scripts/setup-test-env.sh); the module is skipped only when the binary is missing.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import signal
import subprocess
import threading
import time
import unittest
from urllib.parse import urlsplit

import bettertest
from bettertest import AuthError, Result, RunError, SSEEvent, Worker, parse_sse
from tests.workerproc import BINARY, IMAGE, WorkerProcess, require_binary

MISSING_IMAGE = "127.0.0.1:1/bettertest/missing:latest"  # nothing listens there: the pull fails at once


def setUpModule() -> None:
    require_binary()


class Recorder:
    """An on_output handler that keeps every chunk in order."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, str]] = []

    def __call__(self, stream: str, text: str) -> None:
        self.chunks.append((stream, text))

    def joined(self) -> list[tuple[str, str]]:
        """The chunks with neighbours of the same stream merged, which chunking cannot change."""
        merged: list[tuple[str, str]] = []
        for stream, text in self.chunks:
            if merged and merged[-1][0] == stream:
                merged[-1] = (stream, merged[-1][1] + text)
            else:
                merged.append((stream, text))
        return merged


class WorkerTestCase(unittest.TestCase):
    worker_args: tuple[str, ...] = ("--max-parallel", "1")
    proc: WorkerProcess
    worker: Worker

    @classmethod
    def setUpClass(cls) -> None:
        cls.proc = WorkerProcess(*cls.worker_args)
        cls.worker = Worker(cls.proc.url, token_file=cls.proc.token_file)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.stop()

    def post_run(self, command: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """POST /run at the protocol level, without the library: the raw answer."""
        parts = urlsplit(self.proc.url)
        assert parts.hostname is not None
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        conn.request(
            "POST",
            "/run",
            json.dumps({"image": IMAGE, "command": command}),
            {"Authorization": f"Bearer {self.proc.token}", "Content-Type": "application/json"},
        )
        return conn, conn.getresponse()

    def run_ok(self, command: str, **kwargs: object) -> Result:
        rec = Recorder()
        result = self.worker.run(IMAGE, command, on_output=rec, **kwargs)  # type: ignore[arg-type]
        self.assertIsNone(result.error)
        return result


class HealthTest(WorkerTestCase):
    worker_args = ("--max-parallel", "3")

    def test_health(self) -> None:
        version = subprocess.run([str(BINARY), "version"], capture_output=True, text=True, check=True).stdout.split()[-1]
        docker = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.assertEqual(
            self.worker.health(),
            {"ready": True, "version": version, "docker": docker, "running": 0, "capacity": 3},
        )

    def test_wrong_token(self) -> None:
        worker = Worker(self.proc.url, token="not-the-token")
        expected = (
            f"the worker at {self.proc.url} rejected the token: missing or wrong token: send the header "
            "Authorization: Bearer TOKEN, with TOKEN from the worker's token file; check that --token-file "
            "names a file holding the same token as the worker's --token-file"
        )
        with self.assertRaises(AuthError) as cm:
            worker.run(IMAGE, "echo never", on_output=Recorder())
        self.assertEqual(str(cm.exception), expected)
        with self.assertRaises(AuthError) as cm:
            worker.health()
        self.assertEqual(str(cm.exception), expected)


class RunTest(WorkerTestCase):
    def test_exit_codes(self) -> None:
        for code in [0, 3, 255]:
            with self.subTest(code=code):
                result = self.run_ok(f"exit {code}")
                self.assertEqual((result.exit_code, result.ok, result.stdout, result.stderr), (code, code == 0, "", ""))
                self.assertRegex(result.run_id, r"\A[0-9a-f]{12}\Z")

    def test_output_order_across_streams(self) -> None:
        rec = Recorder()
        result = self.worker.run(IMAGE, "echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c", on_output=rec)
        self.assertEqual(rec.chunks, [("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n")])
        self.assertEqual((result.exit_code, result.stdout, result.stderr, result.error), (0, "a\nc\n", "b\n", None))

    def test_output_arrives_while_the_command_runs(self) -> None:
        # The command prints the time (host and container share the clock) only after the first
        # line has had time to travel: it must be later than the moment the first line arrived.
        received: list[tuple[str, str, int]] = []
        result = self.worker.run(
            IMAGE,
            "echo first; sleep 1; date +%s%N",
            on_output=lambda stream, text: received.append((stream, text, time.time_ns())),
        )
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(received[0][:2], ("stdout", "first\n"))
        match = re.fullmatch(r"first\n(\d+)\n", result.stdout)
        assert match is not None, result.stdout
        printed_after_sleep = int(match.group(1))
        self.assertLess(received[0][2], printed_after_sleep)

    def test_exception_in_on_output_ends_the_run(self) -> None:
        class Stop(Exception):
            pass

        def stop(stream: str, text: str) -> None:
            raise Stop(text)

        log_start = len(self.proc.log)
        with self.assertRaises(Stop) as cm:
            self.worker.run(IMAGE, "echo first; sleep 30", on_output=stop)
        self.assertEqual(cm.exception.args, ("first\n",))
        # The worker saw the client leave and killed the container at once. (The line of the
        # previous test's run may still come after log_start: the worker logs a run after its exit.)
        line = self.proc.wait_for_log(b"outcome=cancelled", log_start)
        self.assertRegex(
            line.decode(),
            r'\Atime=\S+ level=INFO msg=run id=[0-9a-f]{12} name="" image=bettertest/base:bookworm exit=137 '
            r'outcome=cancelled duration=\S+ detail="the client disconnected"\n\Z',
        )

    def test_default_output_goes_to_sys_stdout_and_stderr(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = self.worker.run(IMAGE, "echo to-out; echo to-err >&2")
        self.assertEqual((out.getvalue(), err.getvalue()), ("to-out\n", "to-err\n"))
        self.assertEqual((result.stdout, result.stderr), ("to-out\n", "to-err\n"))

    def test_ten_megabytes_without_newline(self) -> None:
        size = 10 * 1024 * 1024
        rec = Recorder()
        result = self.worker.run(IMAGE, f"head -c {size} /dev/zero | tr '\\0' x", on_output=rec)
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(len(result.stdout), size)
        self.assertEqual(result.stdout, "x" * size)
        self.assertEqual(rec.joined(), [("stdout", "x" * size)])

    def test_capture_false_keeps_nothing(self) -> None:
        rec = Recorder()
        result = self.worker.run(IMAGE, "echo out; echo err >&2", on_output=rec, capture=False)
        self.assertEqual((result.exit_code, result.stdout, result.stderr), (0, "", ""))
        self.assertEqual(sorted(rec.joined()), [("stderr", "err\n"), ("stdout", "out\n")])

    def test_multibyte_characters_survive_chunking(self) -> None:
        result = self.run_ok("yes é | head -c 3000000")
        self.assertEqual(result.stdout, "é\n" * 1000000)

    def test_bytes_that_are_not_utf8(self) -> None:
        self.assertEqual(self.run_ok("printf 'a\\377b'").stdout, "a\ufffdb")

    def test_env_and_workdir(self) -> None:
        result = self.run_ok(
            "printf '%s|%s|%s' \"$GREETING\" \"${EMPTY-unset}\" \"$(pwd)\"",
            env={"GREETING": "hello world", "EMPTY": ""},
            workdir="/tmp",
        )
        self.assertEqual(result.stdout, "hello world||/tmp")

    def test_user_and_narrowed_limits(self) -> None:
        result = self.run_ok("id -u; cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null", user="65534", pids=99)
        self.assertEqual(result.stdout, "65534\n99\n")

    def test_a_limit_wider_than_the_workers_is_refused(self) -> None:
        with self.assertRaises(RunError) as cm:
            self.worker.run(IMAGE, "true", pids=10**6)
        self.assertEqual(
            str(cm.exception),
            f"the worker at {self.proc.url} refused the run (HTTP 400): \"limits\" asks for pids of 1000000, more than this "
            "worker allows (--pids-limit 4096): ask for less, or start the worker with a larger --pids-limit",
        )

    def test_timeout_cuts_the_run_short(self) -> None:
        rec = Recorder()
        result = self.worker.run(IMAGE, "echo before; sleep 30; echo after", timeout=0.5, on_output=rec)
        self.assertEqual(
            (result.exit_code, result.ok, result.stdout, result.stderr, result.error),
            (137, False, "before\n", "", "timed out after 1 s and was killed: raise timeout_s if the command needs longer"),
        )
        self.assertEqual(rec.chunks, [("stdout", "before\n")])

    def test_timeout_message_on_default_output(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = self.worker.run(IMAGE, "sleep 30", timeout=1)
        self.assertEqual(out.getvalue(), "")
        self.assertEqual(
            err.getvalue(),
            f"bettertest: run {result.run_id} was cut short: timed out after 1 s and was killed: "
            "raise timeout_s if the command needs longer\n",
        )

    def test_missing_image(self) -> None:
        with self.assertRaises(RunError) as cm:
            self.worker.run(MISSING_IMAGE, "true", on_output=Recorder())
        # The middle is the Docker engine's own wording, which differs between versions.
        self.assertRegex(
            str(cm.exception),
            rf"\Athe worker at {re.escape(self.proc.url)} could not start the run: image {re.escape(MISSING_IMAGE)} "
            r"is not on this worker and pulling it failed \(.+\): load it there \(docker load\) or fix the name\Z",
        )

    def test_bad_request(self) -> None:
        with self.assertRaises(RunError) as cm:
            self.worker.run(IMAGE, "true", workdir="relative", on_output=Recorder())
        self.assertEqual(
            str(cm.exception),
            f'the worker at {self.proc.url} refused the run (HTTP 400): "workdir" "relative" must be an '
            'absolute path inside the container, e.g. "/src"',
        )
        with self.assertRaises(RunError) as cm:
            self.worker.run(IMAGE, " ", on_output=Recorder())
        self.assertEqual(
            str(cm.exception),
            f'the worker at {self.proc.url} refused the run (HTTP 400): "command" is required: a shell command, '
            "run as sh -c COMMAND",
        )

    def test_waiting_for_a_slot(self) -> None:
        # The worker has one slot: a run started while another holds it is queued, then runs.
        holding = threading.Event()
        first: list[Result] = []

        def hold_the_slot() -> None:
            first.append(
                self.worker.run(IMAGE, "echo a; sleep 1; echo done", on_output=lambda s, t: holding.set())
            )

        thread = threading.Thread(target=hold_the_slot)
        thread.start()
        holding.wait()
        second = self.run_ok("echo b")
        thread.join()
        self.assertEqual((first[0].exit_code, first[0].stdout), (0, "a\ndone\n"))
        self.assertEqual((second.exit_code, second.stdout), (0, "b\n"))

    def test_raw_stream_of_a_queued_run(self) -> None:
        # The same, read at the protocol level with parse_sse, to see the events themselves.
        holding = threading.Event()
        thread = threading.Thread(
            target=lambda: self.worker.run(IMAGE, "echo a; sleep 1", on_output=lambda s, t: holding.set())
        )
        thread.start()
        holding.wait()
        conn, resp = self.post_run("echo b")
        events = list(parse_sse(iter(lambda: resp.read1(65536), b"")))
        conn.close()
        thread.join()
        self.assertEqual((resp.status, resp.getheader("Content-Type")), (200, "text/event-stream"))
        self.assertEqual([e.name for e in events], ["queued", "started", "output", "exit"])
        self.assertEqual(events[0], SSEEvent("queued", '{"position":1}'))
        self.assertEqual(events[1], SSEEvent("started", json.dumps({"id": json.loads(events[1].data)["id"]}, separators=(",", ":"))))
        self.assertEqual(events[2], SSEEvent("output", '{"stream":"stdout","text":"b\\n"}'))
        self.assertEqual(set(json.loads(events[3].data)), {"code", "duration_ms"})
        self.assertEqual(json.loads(events[3].data)["code"], 0)


class FollowTest(WorkerTestCase):
    def test_a_recorded_stream_replays_to_the_same_result(self) -> None:
        # A real run's body, recorded at the protocol level, then followed one byte at a time:
        # events, JSON and UTF-8 split everywhere give the same output and result as the live run.
        command = "printf 'h\\303\\251\\n'; echo err >&2; exit 3"
        live_rec = Recorder()
        live = self.worker.run(IMAGE, command, on_output=live_rec)
        conn, resp = self.post_run(command)
        body = resp.read()
        conn.close()
        replay_rec = Recorder()
        names: list[str] = []
        replayed = self.worker.follow(
            (body[i : i + 1] for i in range(len(body))), on_output=replay_rec, on_event=lambda name, data: names.append(name)
        )
        # Two runs may interleave their two streams differently: compare each stream's text.
        self.assertEqual(sorted(live_rec.joined()), [("stderr", "err\n"), ("stdout", "hé\n")])
        self.assertEqual(sorted(replay_rec.joined()), sorted(live_rec.joined()))
        self.assertEqual(names, ["started", "exit"])
        self.assertEqual(
            (replayed.exit_code, replayed.stdout, replayed.stderr, replayed.error, replayed.cached),
            (3, "hé\n", "err\n", None, False),
        )
        self.assertEqual((live.exit_code, live.stdout, live.stderr), (3, "hé\n", "err\n"))

    def test_a_stream_cut_before_the_exit_is_an_error(self) -> None:
        with self.assertRaises(RunError) as cm:
            self.worker.follow([b'event: started\ndata: {"id":"r1"}\n\n'])
        self.assertEqual(
            str(cm.exception),
            f"the worker at {self.proc.url} closed the event stream after the run started without the run's exit: "
            "the worker stopped or the connection was lost; see the worker's log",
        )


class WorkerGoesAwayTest(unittest.TestCase):
    """Runs whose worker stops or dies under them; each test has a worker of its own."""

    def setUp(self) -> None:
        self.proc = WorkerProcess()
        self.worker = Worker(self.proc.url, token_file=self.proc.token_file)

    def tearDown(self) -> None:
        self.proc.stop()

    def test_worker_stopping_cuts_the_run_short(self) -> None:
        def stop_worker(stream: str, text: str) -> None:
            self.proc.proc.send_signal(signal.SIGTERM)

        result = self.worker.run(IMAGE, "echo first; sleep 30", on_output=stop_worker)
        self.assertEqual(
            (result.exit_code, result.stdout, result.error),
            (137, "first\n", "the worker is shutting down and killed the command: run it again"),
        )
        self.assertEqual(self.proc.stop(), 0)

    def test_worker_dying_loses_the_stream(self) -> None:
        url = self.proc.url
        with self.assertRaises(RunError) as cm:
            # The restarted worker removes the killed one's container before it listens.
            self.worker.run(IMAGE, "echo first; sleep 30", on_output=lambda s, t: self.proc.kill_and_restart())
        self.assertEqual(
            str(cm.exception),
            f"the worker at {url} closed the event stream after the run started without the run's exit: "
            "the worker stopped or the connection was lost; see the worker's log",
        )


if __name__ == "__main__":
    unittest.main()


class BuildTest(WorkerTestCase):
    def run_build(self, command: str, events: list[tuple[str, dict[str, object]]], **kwargs: object) -> Result:
        return self.worker.run(
            IMAGE, command, outputs=["/out"], cache=True, name="p/b", on_output=Recorder(),
            on_event=lambda name, data: events.append((name, dict(data))), **kwargs,  # type: ignore[arg-type]
        )

    def test_cached_result(self) -> None:
        command = "mkdir /out && echo built > /out/x"
        first_events: list[tuple[str, dict[str, object]]] = []
        first = self.run_build(command, first_events)
        self.assertEqual([name for name, _ in first_events], ["uncached", "started", "artifact", "exit"])
        (_, uncached), (_, started), (_, artifact), (_, exit_) = first_events
        self.assertEqual(set(uncached), {"key", "reason"})
        self.assertRegex(str(uncached["key"]), r"\Asha256:[0-9a-f]{64}\Z")
        self.assertEqual(
            first,
            Result(
                exit_code=0, stdout="", stderr="", duration=int(exit_["duration_ms"]) / 1000,  # type: ignore[call-overload]
                run_id=str(started["id"]), artifacts=(bettertest.Artifact("/out", str(artifact["id"]), 2560),),
                cached=False, cache_key=str(uncached["key"]), cache_reason="first run",
            ),
        )

        second_events: list[tuple[str, dict[str, object]]] = []
        second = self.run_build(command, second_events)
        self.assertEqual(
            second_events,
            [
                ("cached", {"key": first.cache_key, "run_id": first.run_id, "duration_ms": exit_["duration_ms"]}),
                ("artifact", artifact),
                ("exit", {"code": 0, "duration_ms": 0}),
            ],
        )
        self.assertEqual(
            second,
            Result(exit_code=0, stdout="", stderr="", duration=0.0, run_id=first.run_id, artifacts=first.artifacts,
                   cached=True, cache_key=first.cache_key, cache_reason=None),
        )
        self.assertTrue(second.ok)

        # Not a build: never from the cache, even with the same command.
        plain = self.worker.run(IMAGE, command, outputs=["/out"], on_output=Recorder())
        self.assertEqual((plain.cached, plain.cache_key, plain.cache_reason, plain.artifacts), (False, None, None, first.artifacts))

    def test_missing_output_fails_with_exit_code_0(self) -> None:
        result = self.run_build("echo no output", [], env={"NONCE": "missing-output"})
        self.assertEqual(
            (result.exit_code, result.ok, result.artifacts, result.error),
            (0, False, (), "output /out does not exist after the command: make the command create it, or fix the path in outputs"),
        )
