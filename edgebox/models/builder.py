"""Drive `edgebox models build` from the main venv: input hash, build venv, cache.

Theory of operation: the build inputs are the pinned build requirements, the build and feature
code (edgebox/models/build/*.py + the run-time modules it executes) and the training data (every
`<data>/<source>/prompts.csv`). Their SHA-256 over (relative name, content) pairs is the input hash.
If `<models>/manifest.json` carries the same hash and every file in it verifies, nothing is done.
Otherwise a separate build venv (`python3 -m venv` + `pip install --require-hashes`; not uv, which
would fetch a CUDA torch instead of the local CPU wheel) is made or reused - keyed by the hash of
the requirements file - and `python -m edgebox.models.build` runs inside it with the repo on
PYTHONPATH. That process writes into a staging directory and swaps it in only on success.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgebox.log import get_logger
from edgebox.models.config import REPO_ROOT
from edgebox.models.errors import ModelBuildError, ModelError
from edgebox.models.manifest import Manifest

PACKAGE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PACKAGE_DIR / "build-requirements.txt"
TORCH_WHEELS = Path("/opt/wheels")
# Run-time modules the build executes (their output lands in the models dir).
BUILD_INPUT_MODULES = (
    "backends.py",
    "config.py",
    "embedder.py",
    "features.py",
    "injection.py",
    "manifest.py",
)
log = get_logger(__name__)


def input_hash(data_dir: Path) -> str:
    digest = hashlib.sha256()
    files = [REQUIREMENTS, *(PACKAGE_DIR / name for name in BUILD_INPUT_MODULES)]
    files += sorted((PACKAGE_DIR / "build").glob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    csvs = sorted(data_dir.glob("*/prompts.csv"))
    if not csvs:
        raise ModelBuildError(
            f"no training data: {data_dir}/<source>/prompts.csv not found (set EDGEBOX_INJECTION_DATA)"
        )
    for path in csvs:
        digest.update(f"data/{path.parent.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def is_current(models_dir: Path, wanted: str) -> bool:
    try:
        manifest = Manifest.load(models_dir)
        if manifest.input_hash != wanted:
            return False
        manifest.verify_all()
    except ModelError:
        return False
    return True


def default_build_venv() -> Path:
    return Path(os.environ.get("EDGEBOX_MODELS_BUILD_VENV", str(REPO_ROOT / "var" / "models-build-venv")))


def ensure_build_venv(venv: Path) -> Path:
    """Create (or reuse) the build venv; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    # The interpreter this venv was made from: same Python version as the run-time venv (3.11, the
    # tag of the local torch wheel), whatever `python3` on PATH happens to be.
    base = getattr(sys, "_base_executable", "") or shutil.which("python3") or sys.executable
    _run([base, "-m", "venv", str(venv)], "creating the build venv")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    if TORCH_WHEELS.is_dir():
        pip += ["--find-links", str(TORCH_WHEELS)]
    _run(
        [*pip, "--require-hashes", "-r", str(REQUIREMENTS)],
        "installing the pinned build requirements",
        quiet=True,
    )
    stamp.write_text(wanted + "\n")
    return python


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, *, quiet: bool = False) -> None:
    """Run a build step; with quiet=True its output is shown only if it fails."""
    print(f"models build: {what}", file=sys.stderr, flush=True)
    result = subprocess.run(cmd, env=env, check=False, capture_output=quiet, text=True)
    if result.returncode != 0:
        if quiet:
            lines = (result.stdout + result.stderr).splitlines()
            print("\n".join(line for line in lines if "is ignored" not in line)[-4000:], file=sys.stderr)
        raise ModelBuildError(f"{what} failed (exit {result.returncode})")


def _run_logged(cmd: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run the build; its own progress lines go to stderr, the converters' chatter only to the log."""
    print("models build: building models (export, quality check, classifier training)", file=sys.stderr)
    tail: list[str] = []
    with log_path.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            if line.startswith("models build:"):
                print(line, end="", file=sys.stderr, flush=True)
            tail = [*tail[-59:], line]
        code = proc.wait()
    if code != 0:
        print("".join(tail), end="", file=sys.stderr)
        raise ModelBuildError(f"the model build failed (exit {code}); full log: {log_path}")


def build(models_dir: Path, data_dir: Path, *, force: bool = False, venv: Path | None = None) -> bool:
    """Build the models if needed. Returns True if a build ran, False if the cache was current."""
    wanted = input_hash(data_dir)
    if not force and is_current(models_dir, wanted):
        log.info("models_current", models_dir=str(models_dir))
        return False
    python = ensure_build_venv(venv or default_build_venv())
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 2))
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), "-m", "edgebox.models.build", "--out", str(models_dir), "--data", str(data_dir)]
    log_path = models_dir.parent / (models_dir.name + "-build.log")
    _run_logged([*cmd, "--input-hash", wanted], env, log_path)
    if not is_current(models_dir, wanted):
        raise ModelBuildError("the build finished but its manifest does not verify")
    return True
