"""Message types shared by every layer that speaks them, below all of them.

Theory of operation: the chat message schema and its limits (`chat`) and the strict decoder whose
errors never echo input (`validation`) are used by the session's application messages
(`edgebox.session.messages`), the box, the phone and the gateway's OpenAI-compatible API. They live
here, in a leaf package that imports nothing from edgebox, so that the session layer can use them
without reaching up into the pipeline (pyca's rule: lower layers never import higher ones).
`edgebox.pipeline.chat` and `edgebox.pipeline.validation` re-export them for the pipeline's code.
"""
