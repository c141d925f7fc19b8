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
