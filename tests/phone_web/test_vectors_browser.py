"""(1) The web phone reproduces every value of docs/protocol-vectors.json byte for byte, in Chromium."""

from __future__ import annotations

import json
from typing import Any

from tests.phone_web.support import VECTORS, Web

# Leaves that are inputs or labels, not outputs of the protocol.
_NOT_OUTPUTS = {"description", "pairing.mode", "session.mode", "refused.mode"}


def _leaves(node: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.update(_leaves(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = "null" if node is None else str(node)
    return out


async def test_every_vector_reproduced_in_the_browser(web: Web) -> None:
    vectors = json.loads(VECTORS.read_text())
    assert await web.page.evaluate("isSecureContext && !!crypto.subtle")
    got: dict[str, str] = await web.module(
        "/test/vectors_check.js", "m.reproduce(await (await fetch('/vectors.json')).json())"
    )
    leaves = _leaves(vectors).items()
    expected = {k: v for k, v in leaves if k not in _NOT_OUTPUTS and not k.startswith("inputs.")}
    assert len(expected) > 50
    missing = sorted(set(expected) - set(got))
    assert not missing, f"vectors the page did not reproduce: {missing}"
    wrong = sorted(k for k in expected if got[k] != expected[k])
    assert not wrong, f"vectors reproduced differently: {wrong}"
    assert web.errors == []


async def test_web_crypto_refuses_invalid_points(web: Web) -> None:
    """Compressed, infinity and off-curve points are refused with invalid_point before any ECDH."""
    vectors = json.loads(VECTORS.read_text())
    good = vectors["pairing"]["box_public"]
    off_curve = good[:-2] + ("00" if good[-2:] != "00" else "01")
    bad = ["02" + good[2:66], "00", "04" + "00" * 64, off_curve, "04" + "ff" * 64]
    codes = await web.module(
        "/phone/lib/crypto.js",
        """Promise.all(args[0].map(async (h) => {
            const b = new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
            try { await m.importPublic(b, 'ECDH'); return 'accepted'; } catch (e) { return e.code; }
        }))""",
        bad,
    )
    assert codes == ["invalid_point"] * len(bad)
    ok = await web.module(
        "/phone/lib/crypto.js",
        "m.importPublic(new Uint8Array(args[0].match(/../g).map((x) => parseInt(x, 16))), 'ECDH')"
        ".then(() => 'ok')",
        good,
    )
    assert ok == "ok"
