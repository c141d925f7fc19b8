"""The SSE parser, fed with every way a stream can be cut into chunks."""

from __future__ import annotations

import json
import unittest
from collections.abc import Iterator

from bettertest import SSEEvent, parse_sse

# A worker-like stream that also carries the awkward parts: comments, an unknown event, a
# multi-line data field, a field without a colon, no space after the colon, non-ASCII text.
STREAM = (
    b": keep-alive\n"
    b"event: queued\n"
    b'data: {"position": 1}\n'
    b"\n"
    b"event: started\n"
    b'data: {"id": "r1"}\n'
    b"\n"
    b"event: output\n"
    b'data: {"stream": "stdout", "text": "h\\u00e9llo\\n"}\n'
    b"\n"
    b"event:future-thing\n"
    b"data:first\n"
    b"data: second\n"
    b"data\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"\n"
    b": another comment\n"
    b"event: output\n"
    b"data: caf\xc3\xa9 \xe2\x82\xac\n"
    b"\n"
    b"event: exit\n"
    b'data: {"code": 0, "duration_ms": 12}\n'
    b"\n"
)

EXPECTED = [
    SSEEvent("queued", '{"position": 1}'),
    SSEEvent("started", '{"id": "r1"}'),
    SSEEvent("output", '{"stream": "stdout", "text": "h\\u00e9llo\\n"}'),
    SSEEvent("future-thing", "first\nsecond\n"),
    SSEEvent("output", "caf\u00e9 \u20ac"),
    SSEEvent("exit", '{"code": 0, "duration_ms": 12}'),
]


def every_split(data: bytes) -> list[list[bytes]]:
    """All the ways to cut data in two, and in three pieces around each cut (with empty chunks)."""
    splits = []
    for i in range(len(data) + 1):
        splits.append([data[:i], data[i:]])
        splits.append([data[:i], b"", data[i:i + 3], data[i + 3:]])
    return splits


class ParseSSETest(unittest.TestCase):
    def test_whole_stream(self) -> None:
        self.assertEqual(list(parse_sse([STREAM])), EXPECTED)

    def test_every_split_position(self) -> None:
        for chunks in every_split(STREAM):
            with self.subTest(cut=len(chunks[0])):
                self.assertEqual(list(parse_sse(chunks)), EXPECTED)

    def test_single_bytes(self) -> None:
        chunks = [STREAM[i:i + 1] for i in range(len(STREAM))]
        self.assertEqual(list(parse_sse(chunks)), EXPECTED)

    def test_crlf_every_split_position(self) -> None:
        crlf = STREAM.replace(b"\n", b"\r\n")
        for chunks in every_split(crlf):
            with self.subTest(cut=len(chunks[0])):
                self.assertEqual(list(parse_sse(chunks)), EXPECTED)

    def test_cr_every_split_position(self) -> None:
        cr = STREAM.replace(b"\n", b"\r")
        for chunks in every_split(cr):
            with self.subTest(cut=len(chunks[0])):
                self.assertEqual(list(parse_sse(chunks)), EXPECTED)

    def test_crlf_single_bytes(self) -> None:
        crlf = STREAM.replace(b"\n", b"\r\n")
        self.assertEqual(list(parse_sse(crlf[i:i + 1] for i in range(len(crlf)))), EXPECTED)

    def test_mixed_line_endings(self) -> None:
        stream = b"event: a\rdata: 1\r\n\nevent: b\ndata: 2\r\r: c\r\ndata: 3\n\r"
        expected = [SSEEvent("a", "1"), SSEEvent("b", "2"), SSEEvent("message", "3")]
        self.assertEqual(list(parse_sse([stream])), expected)
        self.assertEqual(list(parse_sse(stream[i:i + 1] for i in range(len(stream)))), expected)

    def test_cr_then_crlf_across_chunks(self) -> None:
        # CR ends a line; the CRLF after it ends the next (empty) line, which dispatches.
        self.assertEqual(list(parse_sse([b"data: x\r", b"\r\n"])), [SSEEvent("message", "x")])
        self.assertEqual(list(parse_sse([b"data: x\r", b"\r", b"\n"])), [SSEEvent("message", "x")])

    def test_comments_only(self) -> None:
        self.assertEqual(list(parse_sse([b": ping\n\n: ping\n\n:\n\n"])), [])

    def test_default_event_name_is_message(self) -> None:
        self.assertEqual(list(parse_sse([b"data: x\n\nevent:\ndata: y\n\n"])), [SSEEvent("message", "x"), SSEEvent("message", "y")])

    def test_only_one_space_after_colon_is_dropped(self) -> None:
        self.assertEqual(list(parse_sse([b"event:  two\ndata:  x \n\n"])), [SSEEvent(" two", " x ")])

    def test_empty_data_line_dispatches_empty_data(self) -> None:
        self.assertEqual(list(parse_sse([b"event: e\ndata\n\nevent: f\ndata:\ndata:\n\n"])), [SSEEvent("e", ""), SSEEvent("f", "\n")])

    def test_event_without_data_is_not_dispatched_and_resets_name(self) -> None:
        self.assertEqual(list(parse_sse([b"event: lonely\n\ndata: x\n\n"])), [SSEEvent("message", "x")])

    def test_last_event_field_wins(self) -> None:
        self.assertEqual(list(parse_sse([b"event: a\nevent: b\ndata: x\n\n"])), [SSEEvent("b", "x")])

    def test_unfinished_event_at_end_is_dropped(self) -> None:
        self.assertEqual(list(parse_sse([b"data: done\n\nevent: exit\ndata: {}\n"])), [SSEEvent("message", "done")])
        self.assertEqual(list(parse_sse([b"data: done\n\ndata: partial"])), [SSEEvent("message", "done")])

    def test_leading_byte_order_mark_is_dropped(self) -> None:
        stream = b"\xef\xbb\xbfdata: x\n\n"
        self.assertEqual(list(parse_sse([stream])), [SSEEvent("message", "x")])
        self.assertEqual(list(parse_sse(stream[i:i + 1] for i in range(len(stream)))), [SSEEvent("message", "x")])

    def test_invalid_utf8_is_replaced(self) -> None:
        self.assertEqual(list(parse_sse([b"data: a\xffb\n\n"])), [SSEEvent("message", "a\ufffdb")])

    def test_empty_input(self) -> None:
        self.assertEqual(list(parse_sse([])), [])
        self.assertEqual(list(parse_sse([b"", b""])), [])

    def test_events_are_yielded_as_soon_as_complete(self) -> None:
        fed: list[str] = []

        def chunks() -> Iterator[bytes]:
            fed.append("first")
            yield b"data: 1\n\ndata: 2\n"
            fed.append("second")
            yield b"\n"

        events = parse_sse(chunks())
        self.assertEqual(next(events), SSEEvent("message", "1"))
        self.assertEqual(fed, ["first"])
        self.assertEqual(next(events), SSEEvent("message", "2"))
        self.assertEqual(fed, ["first", "second"])

    def test_large_output_events_in_odd_chunks(self) -> None:
        texts = [("x" * 32768) + str(i) for i in range(20)]
        stream = b"".join(
            b"event: output\ndata: " + json.dumps({"stream": "stdout", "text": t}).encode() + b"\n\n" for t in texts
        )
        chunks = [stream[i:i + 1000] for i in range(0, len(stream), 1000)]
        events = list(parse_sse(chunks))
        self.assertEqual([e.name for e in events], ["output"] * 20)
        self.assertEqual([json.loads(e.data)["text"] for e in events], texts)


if __name__ == "__main__":
    unittest.main()
