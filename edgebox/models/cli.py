"""`edgebox models ...`: train the classifier, build the local models, verify them, classify prompts.

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

    build = sub.add_parser(
        "build", help="build the embedder + classifier from the PyPI base model and the committed parameters"
    )
    build.add_argument(
        "--models-dir", type=Path, default=None, help="default: EDGEBOX_MODELS_DIR or var/models"
    )
    build.add_argument(
        "--litert", action="store_true", help="also the LiteRT encoder (needs the torch build venv)"
    )
    build.add_argument(
        "--venv", type=Path, default=None, help="torch build venv (default var/models-build-venv)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if the manifest is current")
    build.set_defaults(func=_build)

    train = sub.add_parser(
        "train", help="train the classifier head from labelled data into the committed params directory"
    )
    train.add_argument(
        "--data",
        type=Path,
        default=None,
        help="<source>/prompts.csv dirs (default: EDGEBOX_INJECTION_DATA or ../shared/...)",
    )
    train.add_argument("--params-dir", type=Path, default=None, help="default: edgebox/models/params")
    train.add_argument("--no-eval", action="store_true", help="skip the leave-one-source-out evaluation")
    train.set_defaults(func=_train)

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
    ran = build(models_dir, litert=args.litert, force=args.force, venv=args.venv)
    print(f"models {'built' if ran else 'up to date'}: {models_dir}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from edgebox.models.trained import PARAMS_DIR
    from edgebox.models.training.train import train

    params_dir = args.params_dir or PARAMS_DIR
    train(
        args.data or default_data_dir(),
        params_dir,
        evaluate_model=not args.no_eval,
        log=lambda line: print(f"models train: {line}", file=sys.stderr, flush=True),
    )
    print(
        f"trained parameters written to {params_dir} (commit them; then `edgebox models build`)",
        file=sys.stderr,
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgebox.models.manifest import Manifest

    names = Manifest.load(args.models_dir or default_models_dir()).verify_all()
    print(f"{len(names)} model files match the manifest", file=sys.stderr)
    return 0


def _fmt(value: object) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _row(name: str, m: dict[str, Any]) -> str:
    cells = [m.get(k) for k in ("n", "positives", "negatives", "precision", "recall", "f1", "fpr")]
    return f"| {name} | " + " | ".join(_fmt(c) for c in cells) + " |"


_HEADER = [
    "| {what} | n | injections | benign | precision | recall | F1 | FPR |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def evaluation_markdown(data: dict[str, Any]) -> str:
    """The manifest's quality figures as Markdown tables (used by `report` and docs/models.md)."""
    lines = ["| embedder variant | mean cosine vs sentence-transformers | worst |", "| --- | --- | --- |"]
    for name, q in sorted(data["embedder"].get("quality", {}).items()):
        if isinstance(q, dict):
            lines.append(f"| {name} | {q['cosine_mean']:.4f} | {q['cosine_min']:.4f} |")
    ev = data.get("classifier", {}).get("evaluation")
    if not isinstance(ev, dict):
        return "\n".join([*lines, "", "(no classifier evaluation recorded: trained with --no-eval)"])
    fam = ev.get("family_held_out")
    if isinstance(fam, dict):
        lines += [
            "",
            f"Held-out split of the project's own family data (templates never trained on), threshold "
            f"{ev['threshold']}: hard-negative FPR {_fmt(fam['hard_negative_fpr'])} "
            f"({fam['hard_negatives']} texts), non-English attack recall "
            f"{_fmt(fam['non_english_attack_recall'])} ({fam['non_english_attacks']} texts).",
            "",
            *(h.format(what="family (held-out templates)") for h in _HEADER),
        ]
        lines += [_row(name, m) for name, m in sorted(fam["families"].items())]
        lines.append(_row("**pooled**", fam["pooled"]))
    cal = ev.get("calibration", {})
    lines += [
        "",
        "Leave-one-source-out (train on all other sources, test on the held-out one; the threshold "
        f"calibrated on these held-out predictions: bias shift {_fmt(cal.get('shift'))}, mean recall "
        f"{_fmt(cal.get('mean_recall'))} at mean FPR {_fmt(cal.get('mean_fpr'))}):",
        "",
        *(h.format(what="held-out source") for h in _HEADER),
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
    lines += [_row(name, m) for name, m in rows]
    lines += [
        "",
        "| hand-written held-out set (never trained on) | n | final model | mean over LOSO models |",
        "| --- | --- | --- | --- |",
    ]
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
