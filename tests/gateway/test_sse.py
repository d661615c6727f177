"""The shared sans-I/O SSE parser and usage filter (edgebox.pipeline.sse), and the error-code table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebox.pipeline.codes import ErrorCode
from edgebox.pipeline.sse import SseMalformed, SseParser, SseTooLarge, UsageFilter, decode_chunk

STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\r\n\r\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\r\r'
    b"data: [DONE]\n\n"
)


def parse_all(data: bytes, cuts: list[int]) -> list[str]:
    p = SseParser()
    out = []
    prev = 0
    for c in [*sorted(set(cuts)), len(data)]:
        out += [e.data for e in p.feed(data[prev:c])]
        prev = c
    return out + [e.data for e in p.close()]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    events = parse_all(STREAM, cuts)
    assert events == parse_all(STREAM, [])
    assert len(events) == 4 and events[-1] == "[DONE]"  # the comment-only block is no event


def test_fields_multiline_data_and_unterminated_tail() -> None:
    p = SseParser()
    (ev,) = p.feed(b"event: x\nid: 7\nretry: 10\ndata: a\ndata:b\n\n")
    assert (ev.event, ev.id, ev.retry, ev.data) == ("x", "7", 10, "a\nb")
    assert SseParser().feed(ev.raw)[0] == ev  # raw round-trips
    assert p.feed(b"data: tail") == [] and [e.data for e in p.close()] == ["tail"]


def test_size_cap_and_bad_utf8() -> None:
    with pytest.raises(SseTooLarge):
        SseParser(max_event_bytes=100).feed(b"data: " + b"x" * 200)
    with pytest.raises(SseTooLarge):
        SseParser(max_event_bytes=100).feed(b"data: x\n" * 30)
    with pytest.raises(SseMalformed):
        SseParser().feed(b"data: \xff\n\n")


def test_chunk_decoding() -> None:
    events = SseParser().feed(STREAM)
    chunks = [decode_chunk(e) for e in events if not e.done]
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[1].finish_reason == "stop"
    assert chunks[2].usage is not None and chunks[2].usage.total == 5
    with pytest.raises(SseMalformed):
        decode_chunk(SseParser().feed(b"data: nope\n\n")[0])


@pytest.mark.parametrize("wants", [True, False])
def test_usage_filter_drops_only_the_forced_usage_chunk(wants: bool) -> None:
    f = UsageFilter(client_wants_usage=wants)
    out = [f.forward(e) for e in SseParser().feed(STREAM)]
    assert f.usage is not None and f.usage.total == 5
    assert (out[2] is None) is (not wants)
    assert out[3] == b"data: [DONE]\n\n"


def test_every_code_has_status_and_session_kind() -> None:
    from edgebox.session.messages import ErrorKind

    for code in ErrorCode:
        assert 400 <= code.status < 600
        ErrorKind(code.session_kind)
    assert ErrorCode.parse("nope") is None
    assert ErrorCode.phone_suspended.status == 403 and not ErrorCode.upstream_error.retryable
