from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgebox.models.config import ModelsConfig
from edgebox.models.embedder import Embedder
from edgebox.models.errors import ManifestInvalidError, ModelHashMismatchError, ModelsMissingError
from edgebox.models.injection import InjectionClassifier
from edgebox.models.manifest import Manifest

from .conftest import copy_models


@pytest.mark.parametrize(
    ("runtime", "victim"),
    [("onnx", "embedder-int8.onnx"), ("litert", "embedder-int8.tflite"), ("onnx", "tokenizer.json")],
)
def test_tampered_model_is_refused(models_dir: Path, tmp_path: Path, runtime: str, victim: str) -> None:
    names = ["tokenizer.json", "embedder-int8.onnx" if runtime == "onnx" else "embedder-int8.tflite"]
    copy_models(models_dir, tmp_path, names)
    data = bytearray((tmp_path / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / victim).write_bytes(bytes(data))
    with pytest.raises(ModelHashMismatchError) as info:
        Embedder(ModelsConfig(models_dir=tmp_path, runtime=runtime))  # type: ignore[arg-type]
    assert info.value.code == "model_hash_mismatch"
    assert victim in str(info.value)


def test_tampered_classifier_head_is_refused(models_dir: Path, tmp_path: Path) -> None:
    copy_models(models_dir, tmp_path, ["tokenizer.json", "embedder-int8.onnx", "injection-head.npy"])
    with (tmp_path / "injection-head.npy").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelHashMismatchError):
        InjectionClassifier(ModelsConfig(models_dir=tmp_path))


def test_missing_and_invalid_manifest(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(ModelsMissingError) as info:
        Manifest.load(tmp_path)
    assert info.value.code == "models_missing"
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(ManifestInvalidError):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99, "files": {}}))
    with pytest.raises(ManifestInvalidError):
        Manifest.load(tmp_path)
    copy_models(models_dir, tmp_path, [])
    with pytest.raises(ModelsMissingError):
        Embedder(ModelsConfig(models_dir=tmp_path))


def test_verify_cli_reports_typed_error(models_dir: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "edgebox", "models", "verify", "--models-dir", str(models_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    copy_models(models_dir, tmp_path, ["tokenizer.json"])
    for name in Manifest.load(models_dir).data["files"]:
        if name != "tokenizer.json":
            (tmp_path / name).symlink_to(models_dir / name)
    (tmp_path / "tokenizer.json").write_text("{}")
    bad = subprocess.run(
        [sys.executable, "-m", "edgebox", "models", "verify", "--models-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "[model_hash_mismatch]" in bad.stderr and "Traceback" not in bad.stderr


def test_report_prints_the_evaluation_tables(models_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgebox", "models", "report", "--models-dir", str(models_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| cyberseceval_pi |" in result.stdout and "pooled" in result.stdout
    assert "holdout_v2_benign_instructions (fpr)" in result.stdout
    assert "| family (held-out templates) |" in result.stdout and "| tool_hijack |" in result.stdout
    assert "hard-negative FPR" in result.stdout
