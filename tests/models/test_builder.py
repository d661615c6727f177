from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgebox.models.builder import input_hash, is_current
from edgebox.models.config import ModelsConfig, default_data_dir
from edgebox.models.errors import ModelBuildError

from .conftest import copy_models


def test_input_hash_tracks_data(tmp_path: Path) -> None:
    src = default_data_dir()
    for name in ("bipia", "jailbreak_corpus_mini"):
        (tmp_path / name).mkdir()
        shutil.copy2(src / name / "prompts.csv", tmp_path / name / "prompts.csv")
    first = input_hash(tmp_path)
    assert first == input_hash(tmp_path)
    with (tmp_path / "bipia" / "prompts.csv").open("a") as fh:
        fh.write('"one more benign question?",0,bipia,extra\n')
    assert input_hash(tmp_path) != first
    with pytest.raises(ModelBuildError):
        input_hash(tmp_path / "nowhere")


def test_cache_is_current_only_for_matching_hash_and_files(models_dir: Path, tmp_path: Path) -> None:
    wanted = input_hash(default_data_dir())
    assert is_current(models_dir, wanted)
    assert not is_current(models_dir, "0" * 64)
    copy_models(models_dir, tmp_path, ["tokenizer.json"])  # other files missing
    assert not is_current(tmp_path, wanted)


def test_config_env_overrides(tmp_path: Path) -> None:
    env = {
        "EDGEBOX_MODELS_DIR": str(tmp_path),
        "EDGEBOX_MODELS_RUNTIME": "litert",
        "EDGEBOX_INJECTION_THRESHOLD": "0.7",
    }
    cfg = ModelsConfig.from_env(env)
    assert (cfg.models_dir, cfg.runtime, cfg.threshold) == (tmp_path, "litert", 0.7)
    from edgebox.errors import ConfigError

    with pytest.raises(ConfigError):
        ModelsConfig.from_env({"EDGEBOX_MODELS_RUNTIME": "tensorflow"})
    with pytest.raises(ConfigError):
        ModelsConfig(runtime="litert", precision="fp32")


def test_failed_build_is_a_typed_error_and_keeps_the_old_models(tmp_path: Path, models_dir: Path) -> None:
    """Real build venv, real failure (data with one class only): typed error, log kept, nothing swapped."""
    import subprocess
    import sys

    from edgebox.models.builder import default_build_venv

    if not (default_build_venv() / "bin" / "python").exists():
        pytest.fail("build venv missing: run `make models` first", pytrace=False)
    data = tmp_path / "data" / "only_benign"
    data.mkdir(parents=True)
    (data / "prompts.csv").write_text("text,label,source,subset\nhello there,0,x,y\n")
    out = tmp_path / "models"
    copy_models(models_dir, out, ["tokenizer.json"])
    before = (out / "manifest.json").read_bytes()
    env = {**__import__("os").environ, "EDGEBOX_INJECTION_DATA": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "edgebox", "models", "build", "--models-dir", str(out)],
        capture_output=True, text=True, timeout=280, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        "[model_build_failed]" in result.stderr
        and "Traceback" not in result.stderr.split("edgebox: error")[-1]
    )
    assert (out / "manifest.json").read_bytes() == before
    assert (tmp_path / "models-build.log").exists()
    assert not (tmp_path / "models.staging").exists()
