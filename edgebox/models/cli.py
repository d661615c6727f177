"""`edgebox models ...`: build the local models, verify them, classify prompts.

`edgebox models classify` contract (for operators and scripts): JSON Lines on stdin, one object
`{"text": "..."}` per line; for each non-blank input line, in order, one JSON line on stdout:
`{"score": <0..1>, "injection": <bool>}` (injection = score >= threshold; default 0.5, from
`--threshold`, else EDGEBOX_INJECTION_THRESHOLD). A malformed line yields, in its place,
`{"error": {"code": "classify_input_invalid", "line": N, "message": "..."}}` (never echoing the
input) and processing goes on; the exit status is then 1 (0 when every line was scored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from edgebox.models.config import ModelsConfig, default_data_dir, default_models_dir
from edgebox.models.errors import ClassifyInputError

MAX_LINE_BYTES = 1 << 20


def register(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="local models: build, verify, classify")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    build = sub.add_parser("build", help="build the embedder and injection classifier (cached by input hash)")
    build.add_argument(
        "--models-dir", type=Path, default=None, help="default: EDGEBOX_MODELS_DIR or var/models"
    )
    build.add_argument(
        "--data-dir", type=Path, default=None, help="default: EDGEBOX_INJECTION_DATA or ../shared/..."
    )
    build.add_argument("--venv", type=Path, default=None, help="build venv (default var/models-build-venv)")
    build.add_argument("--force", action="store_true", help="rebuild even if the manifest is current")
    build.set_defaults(func=_build)

    verify = sub.add_parser("verify", help="check every model file against manifest.json")
    verify.add_argument("--models-dir", type=Path, default=None)
    verify.set_defaults(func=_verify)

    report = sub.add_parser(
        "report", help="print the build-time quality figures from manifest.json (Markdown)"
    )
    report.add_argument("--models-dir", type=Path, default=None)
    report.set_defaults(func=_report)

    classify = sub.add_parser(
        "classify", help='JSON Lines {"text": ...} on stdin -> {"score","injection"} lines'
    )
    classify.add_argument("--models-dir", type=Path, default=None)
    classify.add_argument(
        "--runtime", choices=("onnx", "litert"), default=None, help="default: config/env, onnx"
    )
    classify.add_argument("--threshold", type=float, default=None, help="default: config/env, 0.5")
    classify.set_defaults(func=_classify)


def _config(args: argparse.Namespace) -> ModelsConfig:
    config = ModelsConfig.from_env()
    changes: dict[str, Any] = {}
    if getattr(args, "models_dir", None) is not None:
        changes["models_dir"] = args.models_dir
    if getattr(args, "runtime", None) is not None:
        changes["runtime"] = args.runtime
    if getattr(args, "threshold", None) is not None:
        changes["threshold"] = args.threshold
    return dataclasses.replace(config, **changes) if changes else config


def _build(args: argparse.Namespace) -> int:
    from edgebox.models.builder import build

    models_dir = args.models_dir or default_models_dir()
    ran = build(models_dir, args.data_dir or default_data_dir(), force=args.force, venv=args.venv)
    print(f"models {'built' if ran else 'up to date'}: {models_dir}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgebox.models.manifest import Manifest

    names = Manifest.load(args.models_dir or default_models_dir()).verify_all()
    print(f"{len(names)} model files match the manifest", file=sys.stderr)
    return 0


def _fmt(value: object) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def evaluation_markdown(data: dict[str, Any]) -> str:
    """The manifest's quality figures as Markdown tables (used by `report` and docs/models.md)."""
    lines = ["| embedder variant | mean cosine vs sentence-transformers | worst |", "| --- | --- | --- |"]
    for name, q in sorted(data["embedder"]["quality"].items()):
        if isinstance(q, dict):
            lines.append(f"| {name} | {q['cosine_mean']:.4f} | {q['cosine_min']:.4f} |")
    ev = data["classifier"]["evaluation"]
    lines += [
        "",
        f"Classifier, threshold {ev['threshold']}: leave-one-source-out (train on all other sources "
        "incl. the synthetic set, test on the held-out one):",
        "",
        "| held-out source | n | injections | benign | precision | recall | F1 | FPR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [*ev["leave_one_source_out"].items()]
    rows += [("**pooled, public sources**", ev["leave_one_source_out_pooled_public_sources"])]
    rows += [
        (
            "**pooled, without translated CyberSecEval**",
            ev["leave_one_source_out_pooled_without_translated_cyberseceval"],
        )
    ]
    rows += [("random 80/20 split (flatters)", ev["random_split_80_20"])]
    for name, m in rows:
        cells = [m.get(k) for k in ("n", "positives", "negatives", "precision", "recall", "f1", "fpr")]
        lines.append(f"| {name} | " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += [
        "",
        "| hand-written held-out set (never trained on) | n | final model | mean over LOSO models |",
    ]
    lines += ["| --- | --- | --- | --- |"]
    folds = ev["holdout_across_loso_folds"]
    for key in sorted(k for k in ev if k.startswith("final_model_")):
        name = key.removeprefix("final_model_")
        metric = "fpr" if "benign" in name else "recall"
        fold = folds.get(f"{name}_{metric}_mean")
        lines.append(f"| {name} ({metric}) | {ev[key]['n']} | {_fmt(ev[key][metric])} | {_fmt(fold)} |")
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> int:
    from edgebox.models.manifest import Manifest

    print(evaluation_markdown(Manifest.load(args.models_dir or default_models_dir()).data))
    return 0


def parse_line(line: str, number: int) -> str:
    """The text of one JSON Lines record, or ClassifyInputError (message never contains the input)."""
    if len(line) > MAX_LINE_BYTES:
        raise ClassifyInputError(f"line {number}: longer than {MAX_LINE_BYTES} characters")
    try:
        record = json.loads(line)
    except ValueError:
        raise ClassifyInputError(f"line {number}: not valid JSON") from None
    if not isinstance(record, dict):
        raise ClassifyInputError(f'line {number}: expected a JSON object with a string field "text"')
    text = record.get("text")
    if not isinstance(text, str):
        raise ClassifyInputError(f'line {number}: field "text" is missing or not a string')
    return text


def classify_stream(stdin: TextIO, stdout: TextIO, config: ModelsConfig) -> int:
    from edgebox.models.injection import InjectionClassifier

    classifier = InjectionClassifier(config)
    failures = 0
    for number, raw in enumerate(stdin, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            text = parse_line(line, number)
        except ClassifyInputError as exc:
            failures += 1
            out: dict[str, Any] = {"error": {"code": exc.code, "line": number, "message": str(exc)}}
        else:
            score = classifier.score([text])[0]
            out = {"score": round(score, 6), "injection": classifier.is_injection(score)}
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()
    return 1 if failures else 0


def _classify(args: argparse.Namespace) -> int:
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    try:
        return classify_stream(stdin, sys.stdout, _config(args))
    except BrokenPipeError:
        # The reader went away (e.g. `| head -1`): stop quietly, like other filters.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
