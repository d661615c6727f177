"""What answers a prompt on the box. The session server streams whatever a `Responder` yields.

`EchoResponder` answers with the last user message (the foundation demo and transport tests); the
local-cache / gateway responder of the box pipeline plugs in through the same protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from edgebox.session.messages import Done, Prompt, Usage


@dataclass(frozen=True, slots=True)
class RequestContext:
    phone_id: str
    trace: str | None


class Responder(Protocol):
    def respond(self, prompt: Prompt, ctx: RequestContext) -> AsyncIterator[str | Done]:
        """Yield text deltas, then optionally one `Done` (usage, source); the server adds ids."""
        ...


@dataclass
class EchoResponder:
    """Echoes the last user message back in pieces of `piece` characters."""

    piece: int = 200

    async def respond(self, prompt: Prompt, ctx: RequestContext) -> AsyncIterator[str | Done]:
        text = next((m.content for m in reversed(prompt.messages) if m.role == "user"), "")
        for i in range(0, len(text), self.piece):
            yield text[i : i + self.piece]
        n = max(1, len(text) // 4)
        yield Done(id=prompt.id, source="echo", usage=Usage(n, n, 2 * n), trace=ctx.trace)
