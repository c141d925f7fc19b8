"""A Server-Sent Events parser that reads any iterable of bytes chunks.

It follows the parts of the WHATWG event-stream interpretation rules that matter for a client:
``event:`` and ``data:`` fields (several data lines joined with ``\\n``), one optional space after
the colon, ``:`` comment lines, CRLF / LF / CR line endings (also when a CRLF is split between
two chunks), dispatch on a blank line, no dispatch for an event without data lines, a leading
UTF-8 byte order mark, and an unfinished event at the end of the stream is dropped.
``id`` and ``retry`` fields are read and ignored: the client never reconnects.

Speed matters (run output flows through here), so the work is done with bytes methods over
whole chunks and whole lines, never byte by byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = ["SSEEvent", "parse_sse"]

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched server-sent event.

    Attributes:
        name: The event type: the last ``event:`` field's value, or ``"message"`` when none (or an
            empty one) was given.
        data: The ``data:`` field values joined with ``"\\n"``.
    """

    name: str
    data: str


def parse_sse(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Parse a text/event-stream body into events.

    Chunk boundaries carry no meaning: a line, a CRLF pair or a UTF-8 character may be split
    anywhere between chunks.

    Args:
        chunks: The raw body, as bytes chunks of any size (empty chunks are allowed).

    Returns:
        An iterator that yields each event as soon as its terminating blank line has arrived.
    """
    pending: list[bytes] = []  # pieces of the line that has no line ending yet
    skip_lf = False  # the previous chunk ended in CR, so an LF starting this one belongs to it
    at_start = True  # the byte order mark may only appear at the very start
    name: bytes | None = None
    data: list[bytes] = []
    for chunk in chunks:
        if not chunk:
            continue
        if skip_lf:
            skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    continue
        if b"\r" in chunk:
            skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        last = lines.pop()
        if last:
            pending.append(last)
        if at_start:
            at_start = False
            if lines[0].startswith(_BOM):
                lines[0] = lines[0][len(_BOM):]
        for line in lines:
            if not line:
                if data:
                    yield SSEEvent(
                        name.decode("utf-8", "replace") if name else "message",
                        (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace"),
                    )
                    data = []
                name = None
                continue
            if line[0] == 0x3A:  # ":" starts a comment (keep-alive)
                continue
            colon = line.find(b":")
            if colon < 0:
                field = line
                value = b""
            else:
                field = line[:colon]
                start = colon + 1
                if line[start:start + 1] == b" ":
                    start += 1
                value = line[start:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
