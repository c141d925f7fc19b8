"""Reports of a pipeline run: a compact human view, and the JSON lines of docs/report-jsonl.md.

The pipeline turns what happens into events, plain mappings with an ``"event"`` name and the
fields that docs/report-jsonl.md lists for it (everything but ``time``), and hands each to one
reporter. A reporter only formats: durations come in the events, so the same events always give
the same text. The pipeline calls ``emit`` from one thread at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, BinaryIO, Protocol, TextIO

from ._secrets import Masker, MaskStream

__all__ = ["Event", "HumanReporter", "JsonlReporter", "MaskingReporter", "Reporter", "format_duration"]

Event = Mapping[str, Any]
"""One event: ``{"event": "task_end", "stage": ..., "task": ..., ...}``, as in docs/report-jsonl.md but without ``time``."""


class Reporter(Protocol):
    """Something that shows a pipeline's events as they happen."""

    def emit(self, event: Event) -> None:
        """Show one event.

        Args:
            event: The event; see :data:`Event`.
        """


def format_duration(ms: int) -> str:
    """A duration as the human report shows it.

    Args:
        ms: Milliseconds.

    Returns:
        ``"0.81s"`` below a minute, ``"2m05s"`` from a minute on (both cut, not rounded, so a
        duration never shows as more than it was).
    """
    if ms < 60_000:
        return f"{ms // 1000}.{ms % 1000 // 10:02d}s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonlReporter:
    """Writes every event as one JSON object per line, the protocol of docs/report-jsonl.md.

    Each line is written and flushed as its event happens, so a reader sees the run live.
    """

    def __init__(self, out: BinaryIO, *, wall_clock: Callable[[], float] = time.time) -> None:
        """Set up the reporter.

        Args:
            out: Where the lines go, as UTF-8 bytes (e.g. ``sys.stdout.buffer``).
            wall_clock: Seconds since the epoch, for the ``time`` field; injectable for tests.
        """
        self._out = out
        self._wall_clock = wall_clock

    def emit(self, event: Event) -> None:
        """Write the event as one line, with its ``time``, and flush.

        Args:
            event: The event; see :data:`Event`.
        """
        line = {"event": event["event"], "time": _rfc3339(self._wall_clock())}
        line.update((k, v) for k, v in event.items() if k != "event")
        data = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
        # A lone surrogate (a file name that is not UTF-8) becomes the JSON escape \udcXX: still valid JSON.
        self._out.write(data.encode("utf-8", "backslashreplace") + b"\n")
        self._out.flush()


# Fields that name things rather than say them: never masked, so events still find their task.
_NAMES = frozenset({"event", "stage", "task", "stream", "kind", "status", "pipeline"})


class MaskingReporter:
    """Masks every secret value in the events before another reporter shows them.

    Every text field is masked (``***``); the output of each task's stream is masked as one
    stream, so a value split across ``task_output`` events is masked too: the end of a chunk that
    may be the start of a value waits for the next chunk, or for the attempt's end
    (``task_attempt``, ``task_end``), when what is left comes out as a last ``task_output``.
    """

    def __init__(self, inner: Reporter, masker: Masker) -> None:
        """Set up the reporter.

        Args:
            inner: The reporter that shows the masked events.
            masker: The secret values.
        """
        self._inner = inner
        self._masker = masker
        self._streams: dict[tuple[str, str, str], MaskStream] = {}

    def emit(self, event: Event) -> None:
        """Mask the event and hand it on.

        Args:
            event: The event; see :data:`Event`.
        """
        if not self._masker and not self._streams:  # no secrets: nothing to do
            self._inner.emit(event)
            return
        name = event["event"]
        if name == "task_output":
            key = (event["stage"], event["task"], event["stream"])
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = self._masker.stream()
            text = stream.write(event["text"])
            if text:
                self._inner.emit({**event, "text": text})
            return
        if name in ("task_attempt", "task_end"):
            for key in [k for k in self._streams if k[:2] == (event["stage"], event["task"])]:
                text = self._streams.pop(key).flush()
                if text:
                    self._inner.emit({"event": "task_output", "stage": key[0], "task": key[1], "stream": key[2], "text": text})
        self._inner.emit(
            {k: self._masker.mask(v) if isinstance(v, str) and k not in _NAMES else v for k, v in event.items()}
        )


_GREEN, _RED, _YELLOW, _CYAN, _DIM, _BOLD, _RESET = (
    "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
)
_STATUS_COLORS = {"passed": _GREEN, "failed": _RED, "skipped": _YELLOW}
_CLEAR_LINE = "\r\x1b[K"


class HumanReporter:
    """A compact view for people: one line per task when it ends, a line per stage, a summary.

    Passing tasks stay quiet; a failing task's line is followed by its failed test cases (from its
    results) with the first lines of their messages, then the whole output of its last attempt,
    indented with ``"    | "``. A test's line counts its test cases (``cases: 1 failed, 2
    passed``), each once by its last attempt: a case that failed and then passed on a retry is
    flaky. A failed attempt of a test that is retried gets a ``retry`` line with its failed cases;
    the next attempt's output starts with a ``── attempt 2 of 3 ──`` marker. The summary leads
    with what failed: a ``failed:`` line names each failed task and its failed cases, then the
    last line counts tasks and test cases. On a terminal, statuses are colored and a last line
    lists the tasks that are running, redrawn as they start and end; elsewhere the text is plain
    and only grows.

    Example (not on a terminal)::

        pipeline hello on http://127.0.0.1:9009
        stage build
          passed   compile  0.81s  not cached: first run
        stage build passed in 0.82s
        stage test
          retry    net  attempt 1 failed (exit code 1), running attempt 2 of 3
          passed   net  1.20s  flaky: passed on attempt 2 of 3
          failed   unit  0.52s  cases: 1 failed, 40 passed; exit code 1; quarantined: does not fail the run
            failed suite.test_parse
              assert 1 == 2
            | FAILED suite.test_parse - assert 1 == 2
          failed   lint  0.25s  exit code 1
            | hello.c:3: trailing whitespace
        stage test failed in 1.31s
        failed: unit (suite.test_parse), lint
        pipeline hello failed in 2.13s: 2 passed (0 cached), 2 failed (1 quarantined), 0 skipped; test cases: 2 failed, 1 flaky, 40 passed
    """

    def __init__(self, out: TextIO, *, color: bool | None = None) -> None:
        """Set up the reporter.

        Args:
            out: Where the text goes, e.g. ``sys.stdout``.
            color: Use colors and the live line of running tasks; by default, when ``out`` is a terminal.
        """
        self._out = out
        self._color = out.isatty() if color is None else color
        self._running: list[str] = []
        # By (stage, task): the output and failed test cases of the attempt that runs, the last
        # attempt's (shown when the task fails), why a build was not cached, the retries allowed.
        self._output: dict[tuple[str, str], list[str]] = {}
        self._failed_cases: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._last_attempt: dict[tuple[str, str], tuple[list[tuple[str, str]], str]] = {}
        # By (stage, task), then case name: its last status, and whether an attempt of it failed.
        self._cases: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}
        self._totals = _Counts()
        self._failed_tasks: list[str] = []
        self._attempt_cases: dict[tuple[str, str], tuple[int, int]] = {}  # this attempt's cases: how many, how many failed  # the recap before the summary: each failed task and its failed cases
        self._reasons: dict[tuple[str, str], str] = {}
        self._retries: dict[tuple[str, str], int] = {}
        self._footer = False

    def emit(self, event: Event) -> None:
        """Show the event: print the lines it completes, and on a terminal redraw the running line.

        Args:
            event: The event; see :data:`Event`.
        """
        name = event["event"]
        lines: list[str] = []
        if name == "pipeline_start":
            lines.append(f"pipeline {event['pipeline']} on {event['worker']}")
        elif name == "stage_start":
            lines.append(f"stage {event['stage']}")
        elif name == "task_start":
            key = (event["stage"], event["task"])
            self._running.append(event["task"])
            self._output[key] = []
            self._retries[key] = event["retries"]
        elif name == "task_output":
            self._output.setdefault((event["stage"], event["task"]), []).append(event["text"])
        elif name == "task_uncached":
            self._reasons[(event["stage"], event["task"])] = event["reason"]
        elif name == "test_case":
            key = (event["stage"], event["task"])
            status, case = event["status"], event["name"]
            cases = self._cases.setdefault(key, {})
            cases[case] = (status, status == "failed" or cases.get(case, ("", False))[1])
            if status == "failed":
                self._failed_cases.setdefault(key, []).append((case, event.get("output") or ""))
            shown, failed = self._attempt_cases.get(key, (0, 0))
            self._attempt_cases[key] = (shown + 1, failed + (status == "failed"))
        elif name == "task_attempt":
            lines.extend(self._task_attempt(event))
        elif name == "task_end":
            lines.extend(self._task_end(event))
        elif name == "stage_end":
            status = event["status"]
            if status == "skipped":
                lines.append(f"stage {event['stage']} {self._paint(status)}")
            else:
                lines.append(f"stage {event['stage']} {self._paint(status)} in {format_duration(event['duration_ms'])}")
        elif name == "pipeline_end":
            quarantined = f" ({event['quarantined']} quarantined)" if event["quarantined"] else ""
            if self._failed_tasks:
                lines.append(f"{self._paint('failed')}: {', '.join(self._failed_tasks)}")
            summary = (
                f"pipeline {event['pipeline']} {self._paint(event['status'], bold=True)} in "
                f"{format_duration(event['duration_ms'])}: {event['passed']} passed ({event['cached']} cached), "
                f"{event['failed']} failed{quarantined}, {event['skipped']} skipped"
            )
            if self._totals.total():
                summary += f"; test cases: {self._totals}"
            if event.get("error"):
                summary += f"; {event['error']}"
            lines.append(summary)
        if not lines and (not self._color or name != "task_start"):
            return
        text = "".join(line + "\n" for line in lines)
        if self._color:
            if self._footer:
                text = _CLEAR_LINE + text
            self._footer = bool(self._running) and name != "pipeline_end"
            if self._footer:
                text += f"{_DIM}  running  {', '.join(self._running)}{_RESET}"
        self._out.write(text)
        self._out.flush()

    def _task_attempt(self, event: Event) -> list[str]:
        """A retry line for a failed attempt that runs again; the last attempt waits for task_end."""
        key = (event["stage"], event["task"])
        output = "".join(self._output.pop(key, []))
        failed_cases = self._failed_cases.pop(key, [])
        # As the boss counts: an attempt that reported no case, or failed without a failed case to
        # show for it, is a case itself, named as its task.
        shown, failed = self._attempt_cases.pop(key, (0, 0))
        if shown == 0 or (event["status"] == "failed" and failed == 0):
            cases = self._cases.setdefault(key, {})
            before = cases.get("", ("", False))[1]
            cases[""] = (event["status"], before or event["status"] == "failed")
        attempt, retries = event["attempt"], self._retries.get(key, 0)
        if event["status"] != "failed" or attempt > retries:
            self._last_attempt[key] = (failed_cases, output)
            return []
        why = _why(event["exit_code"], event["error"])
        line = f"  {self._paint('retry', width=8, code=_YELLOW)} {event['task']}  attempt {attempt} failed"
        line += f" ({why})" if why else ""
        line += f", running attempt {attempt + 1} of {retries + 1}"
        return [line, *(f"    {self._paint('failed')} {case}" for case, _ in failed_cases)]

    def _task_end(self, event: Event) -> list[str]:
        key = (event["stage"], event["task"])
        if event["task"] in self._running:
            self._running.remove(event["task"])
        # A test's output and failed cases are its last attempt's; a build (or a test that never
        # finished an attempt) has only what it printed.
        output = "".join(self._output.pop(key, []))
        failed_cases, output = self._last_attempt.pop(key, ([], output))
        reason = self._reasons.pop(key, None)
        retries = self._retries.pop(key, 0)
        status = event["status"]
        line = f"  {self._paint(status, width=8)} {event['task']}"
        cases = self._cases.pop(key, {})
        counts = _Counts.of(cases.values())
        self._totals.add(counts)
        if status == "skipped":
            return [line]
        details = []
        if set(cases) - {""}:  # a task that is its only case says nothing more than its status
            details.append(f"cases: {counts}")
        if event["cached"]:
            details.append(self._paint("cached", code=_CYAN))
        elif reason is not None:
            details.append(f"not cached: {reason}")
        if status == "failed":
            why = _why(event["exit_code"], event["error"])
            if why:
                details.append(why)
            if event["attempts"] > 1:
                details.append(f"{event['attempts']} attempts")
            if event["quarantined"]:
                details.append("quarantined: does not fail the run")
        elif event["flaky"]:
            details.append(f"flaky: passed on attempt {event['attempts']} of {retries + 1}")
        line += f"  {format_duration(event['duration_ms'])}"
        if event.get("waited_ms"):
            waited_for = ", ".join(event.get("waited_for") or ["a slot"])
            details.append(f"waited {format_duration(event['waited_ms'])} for {waited_for}")
        if details:
            line += "  " + "; ".join(details)
        if status != "failed":
            return [line]
        names = [case for case, _ in failed_cases]
        self._failed_tasks.append(f"{event['task']} ({', '.join(names)})" if names else event["task"])
        return [line, *self._failure(failed_cases, output)]

    def _failure(self, failed_cases: list[tuple[str, str]], output: str) -> list[str]:
        """The lines under a failure: the failed test cases with the start of their messages, then
        the whole output of the last attempt."""
        lines = []
        for name, message in failed_cases:
            lines.append(f"    {self._paint('failed')} {name}")
            shown = message.removesuffix("\n").split("\n") if message else []
            lines.extend(f"      {text}" for text in shown[:CASE_LINES])
            if len(shown) > CASE_LINES:
                lines.append(f"      … {len(shown) - CASE_LINES} more lines (the task's test_results have them all)")
        if output:
            lines.extend(f"    | {text}" for text in output.removesuffix("\n").split("\n"))
        return lines

    def _paint(self, word: str, *, width: int = 0, code: str | None = None, bold: bool = False) -> str:
        padding = " " * (width - len(word))
        if not self._color:
            return word + padding
        start = (code or _STATUS_COLORS.get(word, "")) + (_BOLD if bold else "")
        return f"{start}{word}{_RESET}{padding}"


CASE_LINES = 10
"""How many lines of a failed test case's message the human report shows."""


class _Counts:
    """Test cases counted by how they ended; one that failed and then passed is flaky."""

    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = self.flaky = 0

    @classmethod
    def of(cls, cases: Any) -> _Counts:
        """Count cases given as (last status, whether an attempt failed)."""
        counts = cls()
        for status, failed_before in cases:
            if status == "passed" and failed_before:
                counts.flaky += 1
            elif status in ("passed", "failed", "skipped"):
                setattr(counts, status, getattr(counts, status) + 1)
        return counts

    def add(self, other: _Counts) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.flaky += other.flaky

    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.flaky

    def __str__(self) -> str:
        """Failures first, as the boss says them: ``"2 failed, 1 flaky, 40 passed, 3 skipped"``."""
        parts = [(self.failed, "failed"), (self.flaky, "flaky"), (self.passed, "passed"), (self.skipped, "skipped")]
        return ", ".join(f"{n} {word}" for n, word in parts if n)


def _why(exit_code: int | None, error: str | None) -> str:
    """Why a task or an attempt failed, in words: its exit code unless 0, and its error."""
    parts = [] if exit_code in (None, 0) else [f"exit code {exit_code}"]
    if error:
        parts.append(error)
    return "; ".join(parts)
