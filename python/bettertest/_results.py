"""Test results: JUnit XML and ``go test -json`` output read into a list of test cases.

The parsers are pure: bytes in, :class:`TestCase` values out, in the order the file lists the
tests, duplicates kept (``go test -count=2`` runs a test twice; the caller decides what that means).

JUnit XML is read with the standard library's ElementTree. A DTD is refused before parsing: it
is the only place entities can be declared, and an entity can expand a small file into a huge
one. Only the prolog (before the root element) is looked at, so a ``<!DOCTYPE html>`` in a test's
captured output, which Surefire writes in CDATA, is fine.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .errors import ResultsError

__all__ = ["TestCase", "parse_results", "parse_junit", "parse_go_test_json", "merge_reruns"]

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"

NO_RESULT = "no result: the test did not finish"

_BOM = b"\xef\xbb\xbf"
# What may stand before the root element, apart from a DTD: the XML declaration, processing
# instructions, comments and white space (XML 1.0, production [22] prolog).
_PROLOG = re.compile(rb"(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_JSON_LINE = re.compile(rb"^\s*\{", re.MULTILINE)
_SNIPPET = 200


@dataclass(frozen=True)
class TestCase:
    """The outcome of one test case.

    Attributes:
        name: For JUnit XML ``"classname.name"``, or ``"name"`` when the case has no classname.
            For ``go test -json`` ``"Package/TestName"``; a subtest keeps its ``"Parent/sub"`` name.
        status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        duration: Seconds the test took, ``0.0`` when the file does not say.
        output: For a failed test: in JUnit XML the failure or error message and text, in
            ``go test -json`` the lines the test printed. For a flaky one, what its failed runs
            said. ``""`` for a passed or skipped test.
        flaky: It failed and then passed in the same report: a rerun (gotestsum
            ``--rerun-fails``, Surefire's ``flakyFailure``) passed. Its status is ``"passed"``.
    """

    __test__ = False  # not a test class, though its name says so to test runners

    name: str
    status: str
    duration: float
    output: str
    flaky: bool = False


def parse_results(data: bytes) -> list[TestCase]:
    """Read test results in any understood format.

    JUnit XML is recognised by its first non-space byte, ``<``. Anything else with a line that
    starts with ``{`` is taken for ``go test -json`` output, whose stream may well begin with
    lines that are not JSON (``go: downloading ...``, build errors on a merged stderr).

    Args:
        data: The whole results file.

    Reruns in one report are attempts of one case (see :func:`merge_reruns`): a case that failed
    and then passed is one passed, flaky case.

    Returns:
        The test cases in the order the file lists them.

    Raises:
        ResultsError: The data is empty or in neither format, or the format's parser refused it.
    """
    text = data.removeprefix(_BOM).lstrip()
    if text.startswith(b"<"):
        return merge_reruns(parse_junit(data))
    if _JSON_LINE.search(text):
        return merge_reruns(parse_go_test_json(data))
    if not text:
        raise ResultsError("the test results are empty: expected JUnit XML or go test -json output")
    raise ResultsError(
        f"the test results are in an unknown format (they start with {_first_line(text)!r}): "
        "expected JUnit XML or go test -json output"
    )


def merge_reruns(cases: list[TestCase]) -> list[TestCase]:
    """Make the reruns of a case in one report one case.

    gotestsum ``--rerun-fails`` (and ``go test -count=N``) list a case once a run. A case that
    failed and then passed on its last run passed in the end, and is flaky: it becomes one case,
    where it first appears, ``"passed"``, ``flaky``, with the output of its failed runs. A case
    whose last run failed, or that only passed, is left as it is.

    Args:
        cases: The cases of one report, in its order.

    Returns:
        The cases, reruns merged.
    """
    runs: dict[str, list[TestCase]] = {}
    for case in cases:
        runs.setdefault(case.name, []).append(case)
    merged: list[TestCase] = []
    done: set[str] = set()
    for case in cases:
        same = runs[case.name]
        rerun = len(same) > 1 and same[-1].status == PASSED and any(c.status == FAILED for c in same)
        if not rerun:
            merged.append(case)
        elif case.name not in done:
            done.add(case.name)
            output = "\n".join(c.output for c in same if c.status == FAILED and c.output)
            merged.append(TestCase(case.name, PASSED, same[-1].duration, output, flaky=True))
    return merged


def parse_junit(data: bytes) -> list[TestCase]:
    """Read JUnit XML, as written by pytest ``--junitxml``, Maven Surefire, gotestsum and others.

    The root is ``<testsuites>`` or a single ``<testsuite>``; suites may nest. A ``<testcase>``
    with a ``<failure>`` or an ``<error>`` failed, else one with ``<skipped>`` or
    ``status="disabled"`` (ctest) was skipped, else it passed. Surefire's ``<flakyFailure>`` and
    ``<flakyError>`` (failed, then passed on a rerun) leave it passed and flaky; its
    ``<rerunFailure>`` and ``<rerunError>`` come with a ``<failure>`` or ``<error>``: failed. An
    ``<error>`` of a ``<testsuite>`` itself (its class failed to load) is a failed case named
    ``"SUITE.<init>"``, as Jenkins counts it. A missing, empty, negative or unparsable ``time`` is
    ``0.0`` seconds: the duration is unknown, the cases are not.

    Args:
        data: The XML document, UTF-8 or another encoding that keeps ASCII as it is. White space
            before the XML declaration is allowed.

    Returns:
        The test cases in document order.

    Raises:
        ResultsError: The document has a DTD, is UTF-16, is not well-formed, has another root
            element.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        raise ResultsError("the JUnit XML is UTF-16 or UTF-32: write it as UTF-8")
    data = data.removeprefix(_BOM).lstrip()  # expat wants the XML declaration first
    prolog = _PROLOG.match(data)
    assert prolog is not None  # the pattern matches the empty string
    if data.startswith(b"<!", prolog.end()):
        raise ResultsError(
            "the JUnit XML has a DTD (<!DOCTYPE or <!ENTITY), which is refused because its entities "
            "can expand without bound: write the report without one"
        )
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ResultsError(f"the JUnit XML is not well-formed: {e}") from e
    if root.tag not in ("testsuites", "testsuite"):
        raise ResultsError(f"the XML is not JUnit XML: its root element is <{root.tag}>, not <testsuites> or <testsuite>")
    cases: list[TestCase] = []
    for element in root.iter():
        if element.tag == "testcase":
            cases.append(_junit_case(element))
        elif element.tag == "testsuite":
            errors = element.findall("error")
            if errors:
                suite = element.get("name", "")
                name = f"{suite}.<init>" if suite else "<init>"
                cases.append(TestCase(name, FAILED, 0.0, "\n".join(_problem_text(e) for e in errors)))
    return cases


def _junit_case(case: ET.Element) -> TestCase:
    name = case.get("name", "")
    classname = case.get("classname", "")
    if classname:
        name = f"{classname}.{name}"
    problems = [child for child in case if child.tag in ("failure", "error")]
    flaky = [child for child in case if child.tag in ("flakyFailure", "flakyError")]
    if problems:
        return TestCase(name, FAILED, _seconds(case.get("time", "")), "\n".join(_problem_text(p) for p in problems))
    skipped = case.find("skipped") is not None or case.get("status") == "disabled"
    output = "\n".join(_problem_text(p) for p in flaky)
    return TestCase(name, SKIPPED if skipped else PASSED, _seconds(case.get("time", "")), output, flaky=bool(flaky))


def _problem_text(problem: ET.Element) -> str:
    # Surefire puts a flaky run's stack trace in a <stackTrace> of its own.
    trace = problem.find("stackTrace")
    text = trace.text if trace is not None else problem.text
    return "\n".join(part for part in (problem.get("message", ""), text or "") if part)


def _seconds(value: str) -> float:
    """A ``time`` in seconds; 0.0, unknown, when it is missing, negative or not a number."""
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    return seconds if 0 <= seconds < math.inf else 0.0


@dataclass
class _GoTest:
    name: str
    status: str | None = None  # None while the test has not finished
    elapsed: float = 0.0
    lines: list[str] = field(default_factory=list)


def parse_go_test_json(data: bytes) -> list[TestCase]:
    """Read the stream ``go test -json`` writes: one JSON event a line.

    Only events with a ``Test`` make test cases; each ``run`` event starts one. Actions are
    ``run``, ``pause``, ``cont``, ``output``, ``pass``, ``fail``, ``skip`` and ``bench`` (a
    benchmark that logged and passed). The lines a test printed are kept when it fails. A test
    still running when its package passed is a benchmark (they report no result of their own)
    and passed; one still running when its package failed, or when the stream ends, was cut off
    (a timeout, ``os.Exit``, a crash) and failed, its output being
    ``"no result: the test did not finish"`` followed by the lines it printed.

    A package that fails with no failed test (it does not compile, its ``TestMain`` fails, it
    panics outside a test) is a failed case of its own, named after the package, its output what
    the package printed outside its tests (build errors included).

    Lines that are not JSON are skipped: go prints build errors as plain text (and, since Go
    1.24, as ``build-output`` events, which are skipped alike), and a merged stderr adds more.

    Args:
        data: The whole stream.

    Returns:
        The test cases in the order they started.

    Raises:
        ResultsError: There are no test events, but there are lines that are not JSON or are
            build output: the tests most likely never ran.
    """
    tests: list[_GoTest] = []
    running: dict[tuple[str, str], _GoTest] = {}
    first_other: str | None = None  # description of the first non-JSON or build-output line
    # What each package printed outside its tests, and whether a test of it failed, since it started.
    package_lines: dict[str, list[str]] = {}
    package_failed: set[str] = set()
    build_lines: dict[str, list[str]] = {}  # build output comes before its package's start
    # Decoding once is much faster than having json decode each line; test2json writes
    # valid UTF-8, so a replacement character can only land in a line that is not JSON.
    for number, raw in enumerate(data.decode("utf-8-sig", errors="replace").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        event = None
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                pass
        if not isinstance(event, dict):
            if first_other is None:
                first_other = f"line {number} is not JSON: {_snippet(line)!r}"
            continue
        action = event.get("Action")
        package = _text(event.get("Package"))
        test = _text(event.get("Test"))
        if action == "build-output":
            if first_other is None:
                first_other = f"line {number} is build output: {_snippet(_text(event.get('Output')).rstrip())!r}"
            built = _text(event.get("ImportPath")).split(" ", 1)[0]
            build_lines.setdefault(built, []).append(_text(event.get("Output")))
        if not test:
            if action == "start":
                package_lines.pop(package, None)
                package_failed.discard(package)
            elif action == "output":
                package_lines.setdefault(package, []).append(_text(event.get("Output")))
            elif action in ("pass", "fail", "skip"):
                for key in [key for key in running if key[0] == package]:
                    unfinished = running.pop(key)
                    if action == "pass":
                        unfinished.status = PASSED
                    else:
                        package_failed.add(package)
                if action == "fail" and package and package not in package_failed:
                    # It failed, yet no test of it did: it did not build, TestMain failed, or
                    # it panicked outside a test. The package itself is the failed case.
                    lines = build_lines.pop(package, []) + package_lines.pop(package, [])
                    failed = _GoTest(package, FAILED, _elapsed(event, 0.0), lines)
                    tests.append(failed)
            continue
        key = (package, test)
        if action == "run":
            running[key] = _GoTest(f"{package}/{test}" if package else test)
            tests.append(running[key])
        elif action == "output":
            if key in running:
                running[key].lines.append(_text(event.get("Output")))
        elif action in ("pass", "fail", "skip", "bench"):
            ended = running.pop(key, None)
            if ended is None:  # no run event: the stream was cut at its start
                ended = _GoTest(f"{package}/{test}" if package else test)
                tests.append(ended)
            ended.status = FAILED if action == "fail" else SKIPPED if action == "skip" else PASSED
            if action == "fail":
                package_failed.add(package)
            ended.elapsed = _elapsed(event, ended.elapsed)
    if not tests and first_other is not None:
        raise ResultsError(f"the go test -json output has no test events, and its {first_other}")
    return [_go_case(t) for t in tests]


def _elapsed(event: dict[str, Any], default: float) -> float:
    elapsed = event.get("Elapsed")
    if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool) and 0 <= elapsed < math.inf:
        return float(elapsed)
    return default


def _go_case(test: _GoTest) -> TestCase:
    if test.status is None:
        output = NO_RESULT + "\n" + "".join(test.lines) if test.lines else NO_RESULT
        return TestCase(test.name, FAILED, test.elapsed, output)
    output = "".join(test.lines) if test.status == FAILED else ""
    return TestCase(test.name, test.status, test.elapsed, output)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _first_line(data: bytes) -> str:
    return _snippet(data.split(b"\n", 1)[0].strip().decode(errors="replace"))


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."
