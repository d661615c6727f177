"""`edgebox models train` reproduces the committed classifier head (only where the training data is).

Training is deterministic by construction (fixed seed, the run-time int8 featurisation on one ORT
thread, one BLAS thread for the fit), so the head should come out byte for byte. The accepted
tolerance, if the bytes differ, is 1e-5 absolute per weight: other CPUs may pick other BLAS/ORT
kernels (e.g. under OPENBLAS_CORETYPE) whose float summation order differs in the last bits; a real
change of data, features or training code moves weights by orders of magnitude more.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebox.models import trained
from edgebox.models.config import default_data_dir
from edgebox.models.training.train import data_hash, train

DATA = default_data_dir()
pytestmark = pytest.mark.skipif(
    not any(DATA.glob("*/prompts.csv")), reason=f"training data not present at {DATA}"
)


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
    train(DATA, params, evaluate_model=False, log=lambda _line: None)
    fresh = trained.load(params)
    got, want = fresh.head(), committed.head()
    if (params / trained.HEAD_FILE).read_bytes() != (trained.PARAMS_DIR / trained.HEAD_FILE).read_bytes():
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert fresh.meta["training"] == committed.meta["training"]
