"""`edgebox models train`: train and evaluate the injection classifier head from the training data.

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
The head (weights w, bias b: score = sigmoid(x.w + b)) is written into the committed params
directory (edgebox.models.trained) with the evaluation; `edgebox models build` ships it. Training
is deterministic (fixed seed, one BLAS thread, one ORT thread): a re-run on the same data gives the
same bytes, which tests/models/test_training.py checks wherever the data is present.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse  # type: ignore[import-not-found,import-untyped,unused-ignore]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-not-found,import-untyped,unused-ignore]

from edgebox.models.config import ModelsConfig
from edgebox.models.embedder import Embedder
from edgebox.models.errors import ModelBuildError
from edgebox.models.features import FEATURE_VERSION, NGRAM_DIM, SIGNAL_DIM, SIGNAL_NAMES
from edgebox.models.injection import CLASSIFIER_MAX_TOKENS, feature_rows, split_windows, splitter
from edgebox.models.training.corpus import SEED, Example, holdout_sets, load_sources, synthetic_training
from edgebox.models.training.families import ATTACK_FAMILIES, calibration_templates, family_of, family_split
from edgebox.models.training.families import SOURCE as FAMILY_SOURCE

C = 4.0
EMB_SCALE = 0.5  # the embedding block carries topic; halving it cut held-out-source FPR (LOSO)
NGRAM_SCALE = 1.0
SIGNAL_SCALE = 1.0
THRESHOLD = 0.5
# Training is class-balanced (a 50 % prior); real traffic is mostly benign. Shifting the bias by
# log(0.3 / 0.7) puts the default 0.5 threshold where a balanced model would say 0.7 - chosen on the
# leave-one-source-out pool and held-out set v1 (never on v2) to meet the <= 5 % benign-instruction
# false-positive goal at the cost of some recall.
PRIOR_SHIFT = float(np.log(0.3 / 0.7))  # used only when no evaluation (hence no calibration) runs
WEIGHT_BY_FAMILY = False
FPR_BUDGET = 0.04  # mean false-positive rate over held-out benign sources allowed by the calibration
# Benign families that look like attacks (the hard negatives of the goal).
HARD_NEGATIVE_FAMILIES = frozenset(
    {
        "mentions_jailbreak",
        "benign_base64",
        "password_questions",
        "assistant_questions",
        "obfuscation_benign",
        "document_injection_benign",
        "non_english_benign",
    }
    | {f"{name}_benign" for name in ATTACK_FAMILIES}
)
HOLDOUT_NAMES = (
    "holdout_benign_instructions",
    "holdout_injections",
    "holdout_v2_benign_instructions",
    "holdout_v2_injections",
)


class Features:
    def __init__(
        self,
        rows: Any,
        rule: np.ndarray,
        labels: np.ndarray,
        sources: list[str],
        trainable: np.ndarray,
        groups: list[str] | None = None,
    ) -> None:
        self.rows = rows  # scipy CSR (n, F)
        self.rule = rule
        self.labels = labels
        self.sources = sources
        self.trainable = trainable  # False: evaluated, never trained on
        self.groups = groups if groups is not None else sources  # weighting groups


def weight_group(ex: Example) -> str:
    """The weighting group: the source, and for the project's family data, source + family (each
    family counts like a source of its own, so 20 families are not outweighed by one big corpus)."""
    if WEIGHT_BY_FAMILY and ex.source == FAMILY_SOURCE:
        return f"{ex.source}/{family_of(ex)}"
    return ex.source


def featurise(examples: Sequence[Example], embedder: Embedder) -> Features:
    """Features of each example's first window (a short text is its own first window): exactly what
    the run time scores for it; a long text is scored there window by window, max over windows."""
    tokenizer = splitter(embedder.manifest)
    texts = [split_windows(tokenizer, ex.text, CLASSIFIER_MAX_TOKENS)[0] for ex in examples]
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
        [weight_group(ex) for ex in examples],
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


def fit(feats: Features, idx: np.ndarray, shift: float = PRIOR_SHIFT) -> tuple[np.ndarray, float]:
    idx = idx[feats.trainable[idx]]
    scale = _scale_vector(feats.rows.shape[1])
    x = feats.rows[idx] @ sparse.diags(scale)
    y = feats.labels[idx]
    model = LogisticRegression(C=C, max_iter=2000, random_state=SEED, tol=1e-5)
    model.fit(x, y, sample_weight=_weights(y, [feats.groups[i] for i in idx]))
    return (model.coef_[0] * scale).astype(np.float32), float(model.intercept_[0]) + shift


def predict(feats: Features, idx: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    logits = feats.rows[idx] @ w.astype(np.float64) + b
    head = 1.0 / (1.0 + np.exp(-logits))
    return np.asarray(np.maximum(head, feats.rule[idx]), dtype=np.float64)


def _prf(y: np.ndarray, p: np.ndarray, threshold: float = THRESHOLD) -> dict[str, Any]:
    pred = p >= threshold
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


def calibrate(groups: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The bias shift that puts the 0.5 threshold where held-out sources want it.

    `groups` maps a source to (labels, *head logits* from a model that never saw that source). For
    each candidate shift, recall is averaged over sources with injections and the false-positive
    rate over sources with benign text (each source counts once, whatever its size); the chosen
    shift maximises mean recall subject to mean FPR <= FPR_BUDGET."""
    best: tuple[float, float, float] | None = None
    table = []
    for shift in np.round(np.arange(-3.0, 3.01, 0.25), 2):
        recalls, fprs = [], []
        for y, logit in groups.values():
            pred = logit + shift >= 0.0
            if (y == 1).any():
                recalls.append(float(pred[y == 1].mean()))
            if (y == 0).any():
                fprs.append(float(pred[y == 0].mean()))
        recall, fpr = float(np.mean(recalls)), float(np.mean(fprs))
        table.append({"shift": float(shift), "mean_recall": round(recall, 3), "mean_fpr": round(fpr, 3)})
        if fpr <= FPR_BUDGET and (best is None or recall > best[1]):
            best = (float(shift), recall, fpr)
    if best is None:
        best = (-3.0, 0.0, 0.0)
    return {"shift": best[0], "mean_recall": round(best[1], 3), "mean_fpr": round(best[2], 3),
            "fpr_budget": FPR_BUDGET, "curve": table}  # fmt: skip


def _logits(feats: Features, idx: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return np.asarray(feats.rows[idx] @ w.astype(np.float64) + b, dtype=np.float64)


def evaluate(
    feats: Features, holdout: Features, log: Callable[[str], None], calib: np.ndarray | None = None
) -> tuple[dict[str, Any], float]:
    """Leave-one-source-out with the calibrated shift; returns (evaluation, calibrated shift).

    `calib` marks the calibration rows of the project's family data: their group in the
    calibration is scored by a model trained without them (instead of the family LOSO fold, which
    measures a model that never saw a single benign twin - not what ships)."""
    n = len(feats.labels)
    all_idx = np.arange(n)
    sources = sorted(set(feats.sources))
    calib = np.zeros(n, dtype=bool) if calib is None else calib
    folds: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for source in sources:
        test = np.asarray([i for i in all_idx if feats.sources[i] == source])
        train = np.asarray([i for i in all_idx if feats.sources[i] != source])
        w, b = fit(feats, train, shift=0.0)
        folds[source] = (test, _logits(feats, test, w, b), w, np.asarray([b]))
        log(f"  LOSO fold {source} fitted")
    groups = {
        s: (feats.labels[t][feats.trainable[t]], lg[feats.trainable[t]])
        for s, (t, lg, _, _) in folds.items()
        if not (calib.any() and s == FAMILY_SOURCE)
    }
    if calib.any():
        w, b = fit(feats, np.flatnonzero(~calib), shift=0.0)
        groups[f"{FAMILY_SOURCE} (calibration templates)"] = (
            feats.labels[calib],
            _logits(feats, np.flatnonzero(calib), w, b),
        )
    calibration = calibrate(groups)
    calibration["groups"] = sorted(groups)
    shift = calibration["shift"]
    loso: dict[str, Any] = {}
    pooled_y, pooled_p, pooled_t = [], [], []
    hold_idx = np.arange(len(holdout.labels))
    hold_fold: dict[str, list[float]] = defaultdict(list)
    for source, (test, logit, fold_w, fold_b) in folds.items():
        p = np.maximum(1.0 / (1.0 + np.exp(-(logit + shift))), feats.rule[test])
        loso[source] = _prf(feats.labels[test], p)
        if not source.startswith("edgebox_"):
            pooled_y.append(feats.labels[test])
            pooled_p.append(p)
            pooled_t.append(feats.trainable[test])
        hp = predict(holdout, hold_idx, fold_w, float(fold_b[0]) + shift)
        for name in sorted(set(holdout.sources)):
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
    w, b = fit(feats, np.flatnonzero(~test_mask), shift=shift)
    random_split = _prf(feats.labels[test_mask], predict(feats, np.flatnonzero(test_mask), w, b))
    evaluation = {
        "threshold": THRESHOLD,
        "calibration": calibration,
        "leave_one_source_out": loso,
        "leave_one_source_out_pooled_public_sources": pooled,
        "leave_one_source_out_pooled_without_translated_cyberseceval": pooled_trainable,
        "holdout_across_loso_folds": {
            f"{name}_{'fpr' if 'benign' in name else 'recall'}_mean": round(float(np.mean(f)), 3)
            for name, f in sorted(hold_fold.items())
        },
        "random_split_80_20": random_split,
    }
    return evaluation, shift


def family_report(held: Sequence[Example], p: np.ndarray) -> dict[str, Any]:
    """Per-family figures of the held-out family split (recall for attacks, FPR for benign twins),
    plus the pooled figures the goals are stated in."""
    y = np.asarray([ex.label for ex in held])
    names = [family_of(ex) for ex in held]
    out: dict[str, Any] = {"families": {}}
    for name in sorted(set(names)):
        mask = np.asarray([n == name for n in names])
        out["families"][name] = _prf(y[mask], p[mask])
    out["pooled"] = _prf(y, p)
    hard = np.asarray([ex.label == 0 and family_of(ex) in HARD_NEGATIVE_FAMILIES for ex in held])
    out["hard_negative_fpr"] = round(float((p[hard] >= THRESHOLD).mean()), 3)
    out["hard_negatives"] = int(hard.sum())
    non_en = np.asarray([ex.label == 1 and ":" in ex.subset for ex in held])
    out["non_english_attack_recall"] = round(float((p[non_en] >= THRESHOLD).mean()), 3)
    out["non_english_attacks"] = int(non_en.sum())
    return out


def data_hash(data_dir: Path) -> str:
    """SHA-256 over every `<source>/prompts.csv` (relative name + content) and the corpus code."""
    import hashlib

    from edgebox.models.training import corpus, families

    digest = hashlib.sha256(Path(corpus.__file__).read_bytes() + Path(families.__file__).read_bytes())
    csvs = sorted(data_dir.glob("*/prompts.csv"))
    if not csvs:
        raise ModelBuildError(f"no training data: {data_dir}/<source>/prompts.csv not found (--data DIR)")
    for path in csvs:
        digest.update(f"data/{path.parent.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything training needs, featurised: the training rows and the three held-out sets."""

    data_sha256: str
    examples: list[Example]
    feats: Features
    held: list[Example]
    holdout: Features
    family_held: list[Example]
    family: Features
    calibration: np.ndarray  # rows of `examples` in the family calibration split
    featurisation: dict[str, str]  # fingerprint of this CPU's int8 encoder (featurisation_fingerprint)


def featurisation_fingerprint(embedder: Embedder) -> dict[str, str]:
    """SHA-256 of the int8 embeddings of the committed reference prompts, as this machine computes
    them. ONNX Runtime picks its int8 kernels by CPU (AVX2, AVX-512 VNNI, NEON ...), and their
    rounding of the dynamically quantised activations differs in the last bits, so two CPUs featurise
    slightly differently and a head trained on each comes out different (measured: weights up to
    0.22 apart, 99-100 % of decisions the same). Equal fingerprints mean equal features, so a
    retrain must then give the committed head byte for byte (tests/models/test_training.py)."""
    import hashlib
    import platform

    from edgebox.models import trained

    prompts, _ = trained.load().reference()
    vectors = embedder.embed(prompts, batch_size=32, max_tokens=CLASSIFIER_MAX_TOKENS)
    digest = hashlib.sha256(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).hexdigest()
    return {"reference_int8_sha256": digest, "machine": platform.machine()}


def prepare(data_dir: Path, log: Callable[[str], None] = print) -> Prepared:
    """Load the data + the project's own sets and featurise them with the run-time code path."""
    import tempfile

    from edgebox.models import builder

    digest = data_hash(data_dir)
    sources = load_sources(data_dir)
    if {ex.label for ex in sources} != {0, 1}:
        raise ModelBuildError(
            f"no usable training data under {data_dir} (need labelled rows of both classes)"
        )
    family_train, family_held = family_split()
    examples = list(sources) + synthetic_training() + family_train
    held = [ex for group in holdout_sets().values() for ex in group]
    with tempfile.TemporaryDirectory(prefix="edgebox-train-") as tmp:
        log("building the ONNX int8 encoder to featurise with (the run-time code path)")
        manifest = builder.build_encoder(Path(tmp), log)
        embedder = Embedder(
            ModelsConfig(models_dir=Path(tmp), runtime="onnx", precision="int8", threads=1), manifest=manifest
        )
        log(f"featurising {len(examples)} training + {len(held) + len(family_held)} held-out texts")
        feats = featurise(examples, embedder)
        holdout = featurise(held, embedder)
        family = featurise(family_held, embedder)
        fingerprint = featurisation_fingerprint(embedder)
    calib = calibration_templates()
    mask = np.asarray([ex.source == FAMILY_SOURCE and ex.text in calib for ex in examples])
    return Prepared(digest, examples, feats, held, holdout, family_held, family, mask, fingerprint)


def finish(
    prep: Prepared, params_dir: Path, *, evaluate_model: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Evaluate (unless told not to), fit the final head, write it into `params_dir`; return the meta."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-not-found,import-untyped,unused-ignore]

    from edgebox.models import trained

    try:
        previous = trained.load(params_dir).meta
    except ModelBuildError:
        previous = {}
    feats, holdout = prep.feats, prep.holdout
    with threadpool_limits(limits=1):
        if evaluate_model:
            evaluation, shift = evaluate(feats, holdout, log, prep.calibration)
        else:  # reuse the committed calibration: the same data gives the same head
            evaluation, shift = {}, float(previous.get("calibration_shift", PRIOR_SHIFT))
        w, b = fit(feats, np.arange(len(prep.examples)), shift=shift)
    if evaluate_model:
        hp = predict(holdout, np.arange(len(prep.held)), w, b)
        for name in HOLDOUT_NAMES:
            mask = np.asarray([s == name for s in holdout.sources])
            evaluation[f"final_model_{name}"] = _prf(holdout.labels[mask], hp[mask])
        fp = predict(prep.family, np.arange(len(prep.family_held)), w, b)
        evaluation["family_held_out"] = family_report(prep.family_held, fp)
    head = np.concatenate([w.astype(np.float32), np.asarray([b], dtype=np.float32)])
    meta = {
        **previous,
        "model": "logistic regression on [MiniLM embedding | hashed char 3-5-grams | rule signals]",
        "feature_version": FEATURE_VERSION,
        "feature_dim": len(w),
        "ngram_dim": NGRAM_DIM,
        "signals": list(SIGNAL_NAMES),
        "max_tokens": CLASSIFIER_MAX_TOKENS,
        "threshold_default": THRESHOLD,
        "calibration_shift": shift,
        "featurisation": prep.featurisation,
        "training": {
            "data_sha256": prep.data_sha256,
            "examples": len(prep.examples),
            "by_source": dict(sorted(Counter(feats.sources).items())),
            "C": C,
            "seed": SEED,
        },
    }
    if evaluate_model:
        meta["evaluation"] = evaluation
    trained.write(params_dir, meta, {trained.HEAD_FILE: trained.npy_bytes(head)})
    return trained.load(params_dir).meta


def train(
    data_dir: Path, params_dir: Path, *, evaluate_model: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train on `data_dir`, write the head (+ evaluation) into `params_dir`; return the params meta."""
    return finish(prepare(data_dir, log), params_dir, evaluate_model=evaluate_model, log=log)
