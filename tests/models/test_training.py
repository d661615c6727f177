"""`edgebox models train` reproduces the committed classifier head (only where the training data is).

Training is deterministic by construction (fixed seed, the run-time int8 featurisation on one ORT
thread, one BLAS thread for the fit): on the same machine a retrain gives the same bytes (measured:
two runs here, identical). Across machines it cannot: ONNX Runtime picks its int8 kernels by CPU
(AVX2, AVX-512 VNNI, NEON), whose rounding of the dynamically quantised activations differs in the
last bits, so the features differ slightly and the fitted weights move (measured between two x86
CPUs: weights up to 0.22 apart, scores at most 0.07 apart, 99.0-100 % of decisions the same).
params.json records a fingerprint of the featurisation (the reference prompts' int8 embeddings):

- same fingerprint (the committing machine's kernels): the head must come out byte for byte, or
  within 1e-5 per weight (BLAS summation order under OPENBLAS_CORETYPE);
- another fingerprint: what must hold is what the head decides. Scored over every training and
  held-out text, the fresh and the committed head agree on >= 98 % of decisions in each set and no
  score moves by more than 0.15. A real change of data is caught by the data hash; a change of
  features, training code or hyper-parameters moves far more decisions than kernel rounding does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebox.models import trained
from edgebox.models.config import default_data_dir
from edgebox.models.training.train import THRESHOLD, data_hash, finish, predict, prepare

DATA = default_data_dir()
pytestmark = pytest.mark.skipif(
    not any(DATA.glob("*/prompts.csv")), reason=f"training data not present at {DATA}"
)

MIN_DECISION_AGREEMENT = 0.98
MAX_SCORE_DIFFERENCE = 0.15


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_training_reproduces_the_committed_head(tmp_path: Path) -> None:
    committed = trained.load()
    assert committed.meta["training"]["data_sha256"] == data_hash(DATA), (
        "the committed parameters were trained on other data: run `edgebox models train` and commit"
    )
    params = tmp_path / "params"
    shutil.copytree(trained.PARAMS_DIR, params)
    (params / trained.HEAD_FILE).unlink()
    prep = prepare(DATA, log=lambda _line: None)
    finish(prep, params, evaluate_model=False, log=lambda _line: None)
    fresh = trained.load(params)
    assert fresh.meta["training"] == committed.meta["training"]
    got, want = fresh.head(), committed.head()
    if prep.featurisation == committed.meta.get("featurisation"):
        if (params / trained.HEAD_FILE).read_bytes() != (trained.PARAMS_DIR / trained.HEAD_FILE).read_bytes():
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        return
    for name, feats in (("training", prep.feats), ("held-out", prep.holdout), ("families", prep.family)):
        rows = np.arange(feats.rows.shape[0])
        p_got = predict(feats, rows, got[:-1].astype(np.float64), float(got[-1]))
        p_want = predict(feats, rows, want[:-1].astype(np.float64), float(want[-1]))
        agreement = float(((p_got >= THRESHOLD) == (p_want >= THRESHOLD)).mean())
        moved = float(np.abs(p_got - p_want).max())
        assert agreement >= MIN_DECISION_AGREEMENT, f"{name}: decisions agree on {agreement:.4f} only"
        assert moved <= MAX_SCORE_DIFFERENCE, f"{name}: a score moved by {moved:.3f}"
