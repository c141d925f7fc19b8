"""Exceptions raised by the bettertest client.

Every exception this package raises on purpose derives from :class:`BettertestError`,
so a pipedef can catch them all with one ``except`` clause.
"""

from __future__ import annotations

__all__ = [
    "BettertestError",
    "ConfigError",
    "WorkerUnreachable",
    "AuthError",
    "RunError",
    "ArtifactError",
    "PipelineError",
    "ResultsError",
]


class BettertestError(Exception):
    """Base class of every error raised by the bettertest client."""


class ConfigError(BettertestError):
    """The client was set up wrongly: a bad worker URL, or a token file that cannot be used."""


class WorkerUnreachable(BettertestError):
    """No connection to the worker could be made (refused, unknown host, network down)."""


class AuthError(BettertestError):
    """The worker rejected the token (HTTP 401)."""


class RunError(BettertestError):
    """A run could not be started or finished.

    Raised when the worker refuses the request (4xx/5xx other than 401), when it reports an
    ``error`` event before the container started (e.g. a missing image), and when the event
    stream ends without an ``exit`` event (worker died or connection lost).
    """


class ArtifactError(BettertestError):
    """An artifact could not be packed, sent, fetched or unpacked.

    Raised for a local path that is missing or holds something an archive cannot (a fifo, a
    device, a socket), for an upload the worker refused (its content does not match the id, or
    it is larger than the worker's cache), for a download whose content does not match its id,
    and for an archive that would write outside the destination when unpacked.
    """


class PipelineError(BettertestError):
    """A pipedef used the pipeline API in a way that cannot work.

    For example a task called outside its stage's ``with`` block, two tasks with the same name,
    or a build's handle used as an input of a task in the build's own stage.
    """


class ResultsError(BettertestError):
    """A test results file could not be read.

    Raised for results in neither understood format (JUnit XML, ``go test -json``), for JUnit XML
    that is not well-formed, has a DTD or a root element other than a test suite, and for
    ``go test -json`` output with no test events but lines that are not JSON or are build
    output (the tests most likely never ran because the build failed).
    """
