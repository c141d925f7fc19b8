"""bettertest: the client library for pipedefs.

A pipedef is a plain Python script. Its pipeline runs stages in order and the tasks of a stage
in parallel, on a bettertest worker; builds are cached by their inputs, tests always run::

    import bettertest as bt

    p = bt.pipeline("hello")  # reads --worker URL --token-file PATH [--report human|jsonl]
    with p.stage("build") as s:
        app = s.build("compile", image="bettertest/cc:bookworm", command="cc -O2 -o /out/hello /src/hello.c",
                      inputs={"/src": bt.local("src")}, outputs=["/out"])
    with p.stage("test") as s:
        s.test("runs", image="bettertest/base:bookworm", command="/app/out/hello", inputs={"/app": app})

The lower level is a Worker, which runs one command in a container::

    worker = bt.connect()  # reads --worker URL --token-file PATH
    result = worker.run("bettertest/base:bookworm", "make test")
    sys.exit(result.exit_code)
"""

from ._artifacts import Artifact, Packed, pack, unpack
from ._connect import connect
from ._ignore import SourceFilter
from ._pipeline import Build, BuildOutput, Image, Input, Local, Pipeline, Service, Stage, Task, TestResult, local, pipeline, service
from ._report import Event, HumanReporter, JsonlReporter, MaskingReporter, Reporter
from ._results import TestCase, parse_go_test_json, parse_junit, parse_results
from ._secrets import Masker, MaskStream, Secret, secret
from ._sse import SSEEvent, parse_sse
from ._worker import BuiltImage, EventHandler, OutputHandler, Result, Upload, Worker, read_token_file
from .errors import (
    ArtifactError,
    AuthError,
    BettertestError,
    ConfigError,
    PipelineError,
    ResultsError,
    RunError,
    WorkerUnreachable,
)

__all__ = [
    "Artifact",
    "ArtifactError",
    "AuthError",
    "BettertestError",
    "Build",
    "BuildOutput",
    "ConfigError",
    "Event",
    "EventHandler",
    "HumanReporter",
    "Input",
    "JsonlReporter",
    "Local",
    "MaskStream",
    "Masker",
    "MaskingReporter",
    "OutputHandler",
    "Packed",
    "Pipeline",
    "PipelineError",
    "Reporter",
    "Result",
    "ResultsError",
    "RunError",
    "SSEEvent",
    "Secret",
    "SourceFilter",
    "Stage",
    "Task",
    "TestCase",
    "TestResult",
    "Upload",
    "BuiltImage",
    "Image",
    "Service",
    "service",
    "Worker",
    "WorkerUnreachable",
    "connect",
    "local",
    "pack",
    "parse_go_test_json",
    "parse_junit",
    "parse_results",
    "parse_sse",
    "pipeline",
    "read_token_file",
    "secret",
    "unpack",
]

__version__ = "0.1.0"
