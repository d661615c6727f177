"""Train, evaluate and export the injection classifier head (build venv only).

Theory of operation: every example is featurised with the *run-time* code (the int8 ONNX embedder
at the classifier's 128-token limit, edgebox.models.features for n-grams and rule signals), so the
head is trained on exactly what it will see. Sources are re-weighted so that each (source, label)
group has the same total weight (gsm8k's 2,300 maths questions must not outvote 55 benign
instructions), then a class-balanced L2 logistic regression is fitted (lbfgs, fixed seed; deterministic).

Evaluation recorded in the manifest (all with the final rule `max(head, decisive rules)`):
- leave-one-source-out: for each source, train on all the others (the synthetic set included),
  score the held-out one: precision/recall/F1 where it has both labels, recall where it only has
  injections, false-positive rate where it only has benign prompts; plus the pooled F1 over all
  held-out predictions (the honest "unseen data" figure);
- hand-written held-out sets never used for training: benign instructions in 12 languages (the
  false-positive goal) and novel injections;
- a stratified random 80/20 split, for comparison only (it flatters).
The head (weights w, bias b: score = sigmoid(x.w + b)) is exported as ONNX (written with onnx.helper)
and as LiteRT (litert-torch), and both are checked against scikit-learn on real feature rows.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse  # type: ignore[import-not-found,import-untyped,unused-ignore]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-not-found,import-untyped,unused-ignore]

from edgebox.models.build.corpus import SEED, Example, holdout_sets, synthetic_training
from edgebox.models.config import ModelsConfig
from edgebox.models.embedder import Embedder
from edgebox.models.features import FEATURE_VERSION, NGRAM_DIM, SIGNAL_DIM, SIGNAL_NAMES
from edgebox.models.injection import CLASSIFIER_MAX_TOKENS, HEAD_FILES, feature_rows
from edgebox.models.manifest import Manifest

C = 4.0
EMB_SCALE = 0.5  # the embedding block carries topic; halving it cut held-out-source FPR (LOSO)
NGRAM_SCALE = 1.0
SIGNAL_SCALE = 1.0
THRESHOLD = 0.5
# Training is class-balanced (a 50 % prior); real traffic is mostly benign. Shifting the bias by
# log(0.3 / 0.7) puts the default 0.5 threshold where a balanced model would say 0.7 - chosen on the
# leave-one-source-out pool and held-out set v1 (never on v2) to meet the <= 5 % benign-instruction
# false-positive goal at the cost of some recall.
PRIOR_SHIFT = float(np.log(0.3 / 0.7))
HOLDOUT_NAMES = (
    "holdout_benign_instructions",
    "holdout_injections",
    "holdout_v2_benign_instructions",
    "holdout_v2_injections",
)


def quality_prompts(examples: Sequence[Example]) -> list[str]:
    """Fixed embedder-quality prompt set: 25 per source (sorted) + the held-out multilingual texts."""
    rng = random.Random(SEED)  # noqa: S311 - deterministic sampling, not security
    by_source: dict[str, list[str]] = defaultdict(list)
    for ex in examples:
        by_source[ex.source].append(ex.text)
    texts: list[str] = []
    for source in sorted(by_source):
        pool = sorted(by_source[source])
        texts += rng.sample(pool, min(25, len(pool)))
    for group in holdout_sets().values():
        texts += [ex.text for ex in group]
    return texts


class Features:
    def __init__(
        self, rows: Any, rule: np.ndarray, labels: np.ndarray, sources: list[str], trainable: np.ndarray
    ) -> None:
        self.rows = rows  # scipy CSR (n, F)
        self.rule = rule
        self.labels = labels
        self.sources = sources
        self.trainable = trainable  # False: evaluated, never trained on


def featurise(examples: Sequence[Example], embedder: Embedder) -> Features:
    texts = [ex.text for ex in examples]
    emb = embedder.embed(texts, batch_size=32, max_tokens=CLASSIFIER_MAX_TOKENS)
    blocks = []
    rules = []
    for start in range(0, len(texts), 512):
        dense, rule = feature_rows(texts[start : start + 512], emb[start : start + 512])
        blocks.append(sparse.csr_matrix(dense))
        rules.append(rule)
    return Features(
        sparse.vstack(blocks).tocsr(),
        np.concatenate(rules),
        np.asarray([ex.label for ex in examples]),
        [ex.source for ex in examples],
        np.asarray([trainable(ex) for ex in examples]),
    )


def trainable(ex: Example) -> bool:
    """Machine-translated CyberSecEval rows are evaluated but not trained on: many are benign-looking
    questions whose "injection" only exists relative to a system prompt, and with almost no benign
    non-English data they teach "not English = attack" (measured: benign-instruction FPR 0.27 -> 0.08)."""
    return not (ex.source == "cyberseceval_pi" and ex.subset.startswith("multilingual"))


def _scale_vector(dim: int) -> np.ndarray:
    return np.concatenate(
        [
            np.full(dim - NGRAM_DIM - SIGNAL_DIM, EMB_SCALE),
            np.full(NGRAM_DIM, NGRAM_SCALE),
            np.full(SIGNAL_DIM, SIGNAL_SCALE),
        ]
    ).astype(np.float64)


def _weights(labels: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Each (source, label) group gets the same total weight; then classes are balanced."""
    counts = Counter(zip(sources, labels.tolist(), strict=True))
    w = np.asarray([1.0 / counts[(s, int(y))] for s, y in zip(sources, labels, strict=True)])
    for cls in (0, 1):
        mask = labels == cls
        if mask.any():
            w[mask] *= len(labels) / 2 / w[mask].sum()
    return w


def fit(feats: Features, idx: np.ndarray) -> tuple[np.ndarray, float]:
    idx = idx[feats.trainable[idx]]
    scale = _scale_vector(feats.rows.shape[1])
    x = feats.rows[idx] @ sparse.diags(scale)
    y = feats.labels[idx]
    model = LogisticRegression(C=C, max_iter=2000, random_state=SEED, tol=1e-5)
    model.fit(x, y, sample_weight=_weights(y, [feats.sources[i] for i in idx]))
    return (model.coef_[0] * scale).astype(np.float32), float(model.intercept_[0]) + PRIOR_SHIFT


def predict(feats: Features, idx: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    logits = feats.rows[idx] @ w.astype(np.float64) + b
    head = 1.0 / (1.0 + np.exp(-logits))
    return np.asarray(np.maximum(head, feats.rule[idx]), dtype=np.float64)


def _prf(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    pred = p >= THRESHOLD
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    out: dict[str, Any] = {"n": len(y), "positives": int((y == 1).sum()), "negatives": int((y == 0).sum())}
    if (y == 1).any():
        out["recall"] = round(tp / (tp + fn), 3)
    if (y == 0).any():
        out["fpr"] = round(fp / (fp + tn), 3)
    if (y == 1).any() and (y == 0).any():
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn)
        out["precision"] = round(precision, 3)
        out["f1"] = round(2 * precision * recall / (precision + recall), 3) if precision + recall else 0.0
    return out


def evaluate(feats: Features, holdout: Features, log: Callable[[str], None]) -> dict[str, Any]:
    n = len(feats.labels)
    all_idx = np.arange(n)
    sources = sorted(set(feats.sources))
    loso: dict[str, Any] = {}
    pooled_y: list[np.ndarray] = []
    pooled_p: list[np.ndarray] = []
    pooled_t: list[np.ndarray] = []
    hold_idx = np.arange(len(holdout.labels))
    hold_fold: dict[str, list[float]] = defaultdict(list)
    for source in sources:
        test = np.asarray([i for i in all_idx if feats.sources[i] == source])
        train = np.asarray([i for i in all_idx if feats.sources[i] != source])
        w, b = fit(feats, train)
        p = predict(feats, test, w, b)
        loso[source] = _prf(feats.labels[test], p)
        if source != "edgebox_synthetic":
            pooled_y.append(feats.labels[test])
            pooled_p.append(p)
            pooled_t.append(feats.trainable[test])
        hp = predict(holdout, hold_idx, w, b)
        for name in HOLDOUT_NAMES:
            mask = np.asarray([s == name for s in holdout.sources])
            hold_fold[name].append(float((hp[mask] >= THRESHOLD).mean()))
        log(f"  LOSO {source}: {loso[source]}")
    pooled = _prf(np.concatenate(pooled_y), np.concatenate(pooled_p))
    keep = np.concatenate(pooled_t)
    pooled_trainable = _prf(np.concatenate(pooled_y)[keep], np.concatenate(pooled_p)[keep])
    # stratified random 80/20 split
    rng = np.random.default_rng(SEED)
    test_mask = np.zeros(n, dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(feats.labels == cls)
        test_mask[rng.choice(idx, size=len(idx) // 5, replace=False)] = True
    w, b = fit(feats, np.flatnonzero(~test_mask))
    random_split = _prf(feats.labels[test_mask], predict(feats, np.flatnonzero(test_mask), w, b))
    return {
        "threshold": THRESHOLD,
        "leave_one_source_out": loso,
        "leave_one_source_out_pooled_public_sources": pooled,
        "leave_one_source_out_pooled_without_translated_cyberseceval": pooled_trainable,
        "holdout_across_loso_folds": {
            f"{name}_{'fpr' if 'benign' in name else 'recall'}_mean": round(float(np.mean(folds)), 3)
            for name, folds in sorted(hold_fold.items())
        },
        "random_split_80_20": random_split,
    }


def _export_onnx(w: np.ndarray, b: float, path: Path) -> None:
    import onnx  # type: ignore[import-not-found,import-untyped,unused-ignore]
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "weight"], ["logit0"]),
            helper.make_node("Add", ["logit0", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["score"]),
        ],
        "injection_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", len(w)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(w.reshape(-1, 1).astype(np.float32), "weight"),
            numpy_helper.from_array(np.asarray([b], dtype=np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgebox")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def _export_litert(w: np.ndarray, b: float, path: Path) -> None:
    import litert_torch  # type: ignore[import-not-found,import-untyped,unused-ignore]
    import torch  # type: ignore[import-not-found,import-untyped,unused-ignore]

    class Head(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(len(w), 1)
            with torch.no_grad():
                self.linear.weight.copy_(torch.from_numpy(w.reshape(1, -1)))
                self.linear.bias.fill_(b)

        def forward(self, features: Any) -> Any:
            return {"score": torch.sigmoid(self.linear(features))}

    sample = {"features": torch.zeros(1, len(w), dtype=torch.float32)}
    litert_torch.signature("head", Head().eval(), sample_kwargs=sample).convert().export(str(path))


def train_and_export(
    out: Path, manifest: Manifest, sources: Sequence[Example], log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, str]]:
    examples = list(sources) + synthetic_training()
    held = [ex for group in holdout_sets().values() for ex in group]
    embedder = Embedder(
        ModelsConfig(models_dir=out, runtime="onnx", precision="int8", threads=2), manifest=manifest
    )
    log(f"featurising {len(examples)} training + {len(held)} held-out texts")
    feats = featurise(examples, embedder)
    holdout = featurise(held, embedder)
    evaluation = evaluate(feats, holdout, log)
    w, b = fit(feats, np.arange(len(examples)))
    hp = predict(holdout, np.arange(len(held)), w, b)
    for name in HOLDOUT_NAMES:
        mask = np.asarray([s == name for s in holdout.sources])
        evaluation[f"final_model_{name}"] = _prf(holdout.labels[mask], hp[mask])
    _export_onnx(w, b, out / HEAD_FILES["onnx"])
    _export_litert(w, b, out / HEAD_FILES["litert"])
    section = {
        "model": "logistic regression on [MiniLM embedding | hashed char 3-5-grams | rule signals]",
        "feature_version": FEATURE_VERSION,
        "ngram_dim": NGRAM_DIM,
        "signals": list(SIGNAL_NAMES),
        "max_tokens": CLASSIFIER_MAX_TOKENS,
        "threshold_default": THRESHOLD,
        "prior_shift": round(PRIOR_SHIFT, 4),
        "training": {
            "examples": len(examples),
            "by_source": dict(sorted(Counter(feats.sources).items())),
            "C": C,
            "seed": SEED,
        },
        "evaluation": evaluation,
    }
    return section, {
        HEAD_FILES["onnx"]: "injection classifier head, ONNX (MatMul+Add+Sigmoid)",
        HEAD_FILES["litert"]: "injection classifier head, LiteRT (signature 'head')",
    }
