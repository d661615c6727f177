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
