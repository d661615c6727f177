"""Local models: MiniLM sentence embeddings and the prompt-injection classifier (no network, no torch).

Run time: `embedder.Embedder`, `injection.InjectionClassifier` (the `Classifier` protocol of
edgebox.pipeline.classifier), `fencing.fence_document`, configured by `config.ModelsConfig`; every
model file is checked against `manifest.json` before use. Build time (separate venv, torch):
`edgebox models build` -> `builder` -> `python -m edgebox.models.build`. See docs/models.md.
Importing this package imports no runtime: onnxruntime / ai_edge_litert load on first use.
"""
