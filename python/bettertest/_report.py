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

    Passing tasks stay quiet; a failing task's failed test cases (from its results) and its whole
    output follow its line, the output indented with ``"    | "``. A failed attempt of a test that
    is retried gets a ``retry`` line, followed the same way. On a terminal, statuses are colored
    and a last line lists the tasks that are running, redrawn as they start and end; elsewhere
    the text is plain and only grows.

    Example (not on a terminal)::

        pipeline hello on http://127.0.0.1:9009
        stage build
          passed   compile  0.81s  not cached: first run
        stage build passed in 0.82s
        stage test
          retry    net  attempt 1 failed (exit code 1), running attempt 2 of 3
            | connection reset by peer
          passed   net  1.20s  flaky: passed on attempt 2 of 3
          failed   unit  0.52s  exit code 1; quarantined: does not fail the run
            failed suite.test_parse
            | FAILED suite.test_parse - assert 1 == 2
          failed   lint  0.25s  exit code 1
            | hello.c:3: trailing whitespace
        stage test failed in 1.31s
        pipeline hello failed in 2.13s: 2 passed (0 cached), 2 failed (1 quarantined), 0 skipped
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
        self._failed_cases: dict[tuple[str, str], list[str]] = {}
        self._last_attempt: dict[tuple[str, str], tuple[list[str], str]] = {}
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
            if event["status"] == "failed":
                self._failed_cases.setdefault((event["stage"], event["task"]), []).append(event["name"])
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
            summary = (
                f"pipeline {event['pipeline']} {self._paint(event['status'], bold=True)} in "
                f"{format_duration(event['duration_ms'])}: {event['passed']} passed ({event['cached']} cached), "
                f"{event['failed']} failed{quarantined}, {event['skipped']} skipped"
            )
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
        attempt, retries = event["attempt"], self._retries.get(key, 0)
        if event["status"] != "failed" or attempt > retries:
            self._last_attempt[key] = (failed_cases, output)
            return []
        why = _why(event["exit_code"], event["error"])
        line = f"  {self._paint('retry', width=8, code=_YELLOW)} {event['task']}  attempt {attempt} failed"
        line += f" ({why})" if why else ""
        line += f", running attempt {attempt + 1} of {retries + 1}"
        return [line, *self._failure(failed_cases, output)]

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
        if status == "skipped":
            return [line]
        details = []
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
            details.append(f"waited {format_duration(event['waited_ms'])} for a slot")
        if details:
            line += "  " + "; ".join(details)
        if status != "failed":
            return [line]
        return [line, *self._failure(failed_cases, output)]

    def _failure(self, failed_cases: list[str], output: str) -> list[str]:
        """The lines under a failure: the failed test cases, then the whole output."""
        lines = [f"    {self._paint('failed')} {name}" for name in failed_cases]
        if output:
            lines.extend(f"    | {text}" for text in output.removesuffix("\n").split("\n"))
        return lines

    def _paint(self, word: str, *, width: int = 0, code: str | None = None, bold: bool = False) -> str:
        padding = " " * (width - len(word))
        if not self._color:
            return word + padding
        start = (code or _STATUS_COLORS.get(word, "")) + (_BOLD if bold else "")
        return f"{start}{word}{_RESET}{padding}"


def _why(exit_code: int | None, error: str | None) -> str:
    """Why a task or an attempt failed, in words: its exit code unless 0, and its error."""
    parts = [] if exit_code in (None, 0) else [f"exit code {exit_code}"]
    if error:
        parts.append(error)
    return "; ".join(parts)
