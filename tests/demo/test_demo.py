"""`make demo` (edgebox demo) tells the whole story, and every scenario in it is asserted here; the
demo leaves nothing behind in /tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_tells_the_whole_story_and_leaves_nothing_behind(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "edgebox", "demo", "--no-qr"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    lines = out.splitlines()

    def line(prefix: str, contains: str) -> str:
        hits = [x for x in lines if x.startswith(prefix) and contains in x]
        assert hits, f"no line {prefix!r} containing {contains!r} in:\n{out}"
        return hits[0]

    line("[stub]", "[STUB upstream] a local stand-in")
    line("[pair]", "box key matched the QR pin")
    # a streamed answer, one trace id end to end, the key injected only upstream
    assert "    [STUB upstream] answer #1:" in out
    streamed = line("[box -> phone]", "streamed answer, source=gateway")
    assert int(streamed.rsplit(" in ", 1)[1].split()[0]) >= 3, streamed  # visibly streamed, not one block
    line("[trace]", "back: True")
    line("[gateway]", "only on the upstream request: True")
    # the same question from the cache; the injection blocked at the box
    line("[box -> phone]", "source=cache: from the box's semantic cache, upstream calls 1")
    line("[box]", "blocked by the box's local classifier [injection_blocked]; upstream calls 1")
    # WAN cut: a local answer from the documents with citations, and a queued request
    line("[wan]", "the gateway is stopped")
    assert "[local answer from the branch documents; the AI service was not asked]" in out
    assert "Saturday from 9:00 to 12:00" in out and "(riverside.md, passage" in out
    line("[box -> phone]", "source=local")
    line("[box -> phone]", "finish_reason=queued: in the durable outbox (1 waiting)")
    # WAN back: the queued request is delivered
    line("[box]", "upstream calls now 2")
    line("[box -> phone]", "the queued answer for 'welcome-1' arrived: [STUB upstream] answer #2")
    # the revoked phone's live session is dropped
    line("[admin page]", "revoked: 1 live session dropped at once")
    line("[check]", "the revoked phone is refused [phone_revoked]")
    line("[box]", "the upstream key is anywhere in the box's files: False")
    decisions = line("[prompt log]", "decisions")
    for d in ("forwarded", "cached", "blocked", "local", "queued", "delivered_later"):
        assert d in decisions
    assert out.rstrip().endswith("demo OK")
    # nothing left behind: no key, certificate or store in the temporary directory
    assert list(tmpdir.iterdir()) == []
    assert "Ignore all previous" not in r.stderr
