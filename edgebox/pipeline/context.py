"""Putting retrieved or pasted documents into a prompt: always fenced, never bare.

Theory of operation: the injection classifier judges what a user types; it cannot reliably find an
instruction hidden inside a document (docs/models.md). So this is the one place where document text
enters a conversation, on the box (local retrieval) and on the gateway alike: each document is
wrapped by `edgebox.models.fencing.fence_document` (random boundary the content cannot close,
invisible characters stripped, an instruction to treat the block as data) and the fenced blocks go
into one system message placed before the conversation. Documents are trimmed to a character budget
that keeps the result inside the shared chat limits, so a long retrieval never produces a request
the gateway would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgebox.models.fencing import fence_document
from edgebox.pipeline.chat import MAX_CONTENT_CHARS, MAX_MESSAGES, ChatMessage, Role

DEFAULT_BUDGET_CHARS = 12_000


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # a label such as "store:chunk/42" or "pasted"; sanitised by the fence
    text: str


def with_documents(
    messages: Sequence[ChatMessage],
    documents: Sequence[Document],
    *,
    budget_chars: int = DEFAULT_BUDGET_CHARS,
) -> list[ChatMessage]:
    """Return `messages` with the documents fenced into one system message in front of them."""
    if not documents:
        return list(messages)
    budget = min(budget_chars, MAX_CONTENT_CHARS - 1_000)
    blocks: list[str] = []
    used = 0
    for i, doc in enumerate(documents):
        room = budget - used
        if room <= 0:
            break
        body = doc.text[:room]
        fenced = fence_document(body, source=doc.source, with_preamble=(i == 0))
        blocks.append(fenced.text)
        used += len(body)
    context = ChatMessage(role=Role.system, content="\n\n".join(blocks)[:MAX_CONTENT_CHARS])
    out = [context, *messages]
    if len(out) > MAX_MESSAGES:  # keep the newest turns; the context message stays first
        out = [context, *list(messages)[-(MAX_MESSAGES - 1) :]]
    return out
