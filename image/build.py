#!/usr/bin/env python3
"""Build the edgebox Raspberry Pi 3/4 SD image (arm64) from Debian packages: `make image`.

Theory of operation
-------------------
Three stages, each cached under var/image/cache by a hash of exactly its inputs, so a rebuild only
redoes what changed (a source edit redoes the ~1 min "app" and "image" stages, never the rootfs):

1. base   `mmdebstrap --architectures=arm64` (qemu-user through binfmt_misc) installs the Debian
          packages of image/packages.txt plus image/base/ (initramfs MODULES=list: 19 s instead of
          5 min under qemu) into base-<hash>.tar. Downloaded .debs are kept in cache/debs and fed
          back in, so a cold rebuild of the rootfs downloads nothing twice.
2. app    Everything of edgebox, built on the host without emulation: the locked dependency set
          (`uv export --frozen --no-default-groups`) installed for aarch64 from manylinux wheels with
          `uv pip install --python-platform aarch64-manylinux_2_36 --target` (wheels cached in
          cache/uv), edgebox's own wheel, byte-compiled for the read-only root (pyc is
          platform-independent; the host has the same Python 3.11), the models (ONNX/tflite files
          are platform-independent), systemd units, sysusers, the D-Bus policy and image/overlay/.
          Output: app-<hash>.tar.
3. image  base + app unpacked into var/image/work/root, finished on the host (`systemd-sysusers
          --root`, `systemctl --root enable`, generic-image clean-up and check), then genimage
          writes the MBR image without mounting anything (no loop partitions or vfat here):
          p1 FAT32 RASPIFIRM (firmware, kernel, initrd, config.txt, cmdline.txt, the provisioning
          file), p2 ext4 RASPIROOT (mounted read-only), p3 ext4 EDGEBOXDATA (all state).

The image is generic: secrets (SQLCipher key, identity key, credential.secret, machine-id, random
seed) are created on the card at first boot (systemd/edgebox-firstboot.service);
`check_generic()` refuses an image that contains any of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import string
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_SRC = REPO / "image"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
COMPONENTS = "main non-free-firmware"
PYTHON_VERSION = "3.11"
PLATFORM = "aarch64-manylinux_2_36"  # Debian 12's glibc
VENV = "/opt/edgebox/.venv"
MODELS = "/opt/edgebox/models"
IMAGE_NAME = "edgebox-rpi-arm64.img"
DATA_MIB = 256  # the data partition in the image (docs/image.md: growing it to the card)
# Bump to invalidate a stage's cache when this script's treatment of it changes.
STAGE_VERSION = {"base": "3", "app": "5", "image": "4"}

# Paths that must never be in a generic image (relative to the root file system).
SECRET_PATHS = (
    "var/lib/systemd/credential.secret",
    "var/lib/systemd/random-seed",
    "var/lib/edgebox/edgebox-db-key.cred",
    "var/lib/edgebox/edgebox-identity.cred",
    "var/lib/edgebox/identity.json",
    "var/lib/edgebox/db.key",
    "var/lib/edgebox/box.db",
    "etc/edgebox/setup-code",
)
SECRET_GLOBS = ("etc/ssh/ssh_host_*", "var/lib/edgebox/*.key", "var/lib/edgebox/*.cred", "root/.*_history")


class BuildError(Exception):
    """A build step failed; the message names the step and its log file."""


class Progress:
    """One line per step with elapsed time; full tool output goes to var/image/logs/<step>.log."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.t0 = time.monotonic()
        logs.mkdir(parents=True, exist_ok=True)

    def say(self, msg: str) -> None:
        print(f"[image {time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    def run(
        self,
        step: str,
        argv: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout: Path | None = None,
    ) -> None:
        log = self.logs / f"{step}.log"
        with log.open("a") as fh:
            fh.write("$ " + " ".join(map(str, argv)) + "\n")
            fh.flush()
            out = stdout.open("wb") if stdout else fh
            try:
                r = subprocess.run(
                    [str(a) for a in argv],
                    stdout=out,
                    stderr=fh,
                    env={**os.environ, **(env or {})},
                    cwd=cwd,
                    check=False,
                )
            finally:
                if stdout:
                    out.close()
        if r.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise BuildError(f"{step} failed (exit {r.returncode}); log: {log}\n" + "\n".join(tail))


def _hash_files(h: hashlib._Hash, paths: Iterable[Path], base: Path) -> None:
    for p in sorted(paths):
        if p.is_dir() or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(base).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(oct(p.stat().st_mode & 0o777).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())


def tree(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()] if root.exists() else []


def base_inputs() -> str:
    h = hashlib.sha256(f"base {STAGE_VERSION['base']} {SUITE} {MIRROR} {COMPONENTS}\n".encode())
    _hash_files(h, [IMAGE_SRC / "packages.txt", *tree(IMAGE_SRC / "base")], IMAGE_SRC)
    return h.hexdigest()[:16]


def packages() -> list[str]:
    lines = (IMAGE_SRC / "packages.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def ensure_binfmt(progress: Progress) -> None:
    """qemu-user for arm64 through binfmt_misc (the sandbox does not mount it by itself)."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        progress.run("binfmt", ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    if not (binfmt / "qemu-aarch64").exists():
        progress.run("binfmt", ["update-binfmts", "--enable", "qemu-aarch64"])
    if not (binfmt / "qemu-aarch64").exists():
        raise BuildError("qemu-aarch64 binfmt handler is not registered (Debian package qemu-user-static)")


def build_base(cache: Path, progress: Progress) -> Path:
    key = base_inputs()
    out = cache / f"base-{key}.tar"
    if out.exists():
        progress.say(f"base: cached rootfs {out.name}")
        return out
    ensure_binfmt(progress)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    n_debs = len(list(debs.glob("*.deb")))
    progress.say(
        f"base: mmdebstrap {SUITE} arm64, {len(packages())} packages ({n_debs} .debs cached); "
        f"a few minutes, log var/image/logs/base.log"
    )
    tmp = out.with_suffix(".tmp.tar")
    sources = [
        f"deb {MIRROR} {SUITE} {COMPONENTS}",
        f"deb {MIRROR} {SUITE}-updates {COMPONENTS}",
        f"deb {SECURITY} {SUITE}-security {COMPONENTS}",
    ]
    argv: list[str | Path] = [
        "mmdebstrap",
        "--architectures=arm64",
        "--variant=apt",
        "--mode=root",
        "--format=tar",
        "--include=" + ",".join(packages()),
        "--hook-directory=/usr/share/mmdebstrap/hooks/eatmydata",
        '--aptopt=Acquire::Retries "3"',
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--skip=essential/unlink",
        "--skip=download/empty",
        # Reuse and refill the .deb cache.
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives "$1"/boot/firmware',
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        f"--setup-hook=sync-in {IMAGE_SRC / 'base'} /",
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        SUITE,
        tmp,
        *sources,
    ]
    t = time.monotonic()
    progress.run("base", argv)
    tmp.rename(out)
    for old in cache.glob("base-*.tar"):
        if old != out:
            old.unlink()
    progress.say(f"base: done in {time.monotonic() - t:.0f}s ({out.stat().st_size / 1e6:.0f} MB)")
    return out


def app_inputs(models: Path) -> str:
    h = hashlib.sha256(f"app {STAGE_VERSION['app']} {PYTHON_VERSION} {PLATFORM}\n".encode())
    _hash_files(
        h,
        [
            REPO / "uv.lock",
            REPO / "pyproject.toml",
            REPO / "README.md",
            *tree(REPO / "edgebox"),
            *tree(REPO / "systemd"),
            *tree(IMAGE_SRC / "overlay"),
            IMAGE_SRC / "build.py",
        ],
        REPO,
    )
    _hash_files(h, tree(models), models)
    return h.hexdigest()[:16]


def _uv() -> Path:
    uv = REPO / ".tools" / "bin" / "uv"
    if not uv.exists():
        raise BuildError("uv missing: run .ci/bootstrap first")
    return uv


LAUNCHER = f"""#!{VENV}/bin/python
import sys
from edgebox.cli import main
sys.exit(main())
"""


def build_app(cache: Path, models: Path, progress: Progress) -> Path:
    if not (models / "manifest.json").exists():
        raise BuildError(f"no models in {models} (run `make models` first)")
    key = app_inputs(models)
    out = cache / f"app-{key}.tar"
    if out.exists():
        progress.say(f"app: cached {out.name}")
        return out
    # The models must load with this edgebox (a stale var/models fails here, not at first boot).
    progress.say("app: checking that the models load with this edgebox (edgebox models classify)")
    check = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "edgebox", "models", "classify"],
        input='{"text": "hello"}\n',
        capture_output=True,
        text=True,
        env={**os.environ, "EDGEBOX_MODELS_DIR": str(models)},
        cwd=REPO,
        check=False,
        timeout=600,
    )
    if check.returncode != 0:
        raise BuildError(f"the models in {models} do not load: {check.stderr.strip()[-300:]}")
    t = time.monotonic()
    stage = cache / "app-staging"
    shutil.rmtree(stage, ignore_errors=True)
    root = stage / "root"
    site = root / VENV.lstrip("/") / "lib" / f"python{PYTHON_VERSION}" / "site-packages"
    site.mkdir(parents=True)
    uv = _uv()
    uv_env = {"UV_CACHE_DIR": str(cache / "uv"), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}

    progress.say(f"app: locked dependencies for {PLATFORM} (uv export --frozen --no-default-groups)")
    reqs = stage / "requirements.txt"
    progress.run(
        "app",
        [
            uv,
            "export",
            "--frozen",
            "--no-default-groups",
            "--no-emit-project",
            "--format",
            "requirements-txt",
            "-o",
            reqs,
        ],
        env=uv_env,
        cwd=REPO,
    )
    progress.say("app: edgebox wheel (uv build)")
    dist = stage / "dist"
    progress.run("app", [uv, "build", "--wheel", "--out-dir", dist, REPO], env=uv_env, cwd=REPO)
    wheel = next(dist.glob("edgebox-*.whl"))
    progress.say(f"app: aarch64 wheels into {VENV} (cache var/image/cache/uv)")
    common = [
        "--target",
        site,
        "--python-platform",
        PLATFORM,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary",
        ":all:",
        "--no-deps",
        "--link-mode",
        "copy",
    ]
    progress.run("app", [uv, "pip", "install", *common, "--require-hashes", "-r", reqs], env=uv_env)
    progress.run("app", [uv, "pip", "install", *common, wheel], env=uv_env)
    # uv's --target leaves host-shebang scripts in <target>/bin: the venv gets its own launcher.
    shutil.rmtree(site / "bin", ignore_errors=True)
    venv = root / VENV.lstrip("/")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to("/usr/bin/python3")
    (venv / "bin" / "python").symlink_to("python3")
    (venv / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {PYTHON_VERSION}\n"
    )
    (venv / "lib64").symlink_to("lib")
    launcher = venv / "bin" / "edgebox"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    # The operator's `edgebox ...` on the console (on PATH; the venv's bin is not).
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/bin/edgebox").symlink_to(f"{VENV}/bin/edgebox")
    # The root is read-only on the card: byte-compile everything now. .pyc files are the same on
    # every architecture; the host interpreter must be the target's minor version.
    if f"{sys.version_info.major}.{sys.version_info.minor}" != PYTHON_VERSION:
        raise BuildError(f"host Python must be {PYTHON_VERSION} to byte-compile for the image")
    progress.run(
        "app",
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "2",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(root),
            "-p",
            "/",
            site,
        ],
    )
    progress.say("app: models, units, overlay")
    shutil.copytree(models, root / MODELS.lstrip("/"), ignore=shutil.ignore_patterns("*.log", "*.tmp"))
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for unit in sorted((REPO / "systemd").iterdir()):
        if unit.suffix in (".service", ".socket") and unit.name != "edgebox-gateway.service":
            shutil.copy2(unit, units / unit.name)
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy2(REPO / "systemd/edgebox.sysusers.conf", root / "usr/lib/sysusers.d/edgebox.conf")
    (root / "usr/share/dbus-1/system.d").mkdir(parents=True)
    shutil.copy2(
        REPO / "systemd/org.edgebox.bluez.conf", root / "usr/share/dbus-1/system.d/org.edgebox.bluez.conf"
    )
    shutil.copytree(IMAGE_SRC / "overlay", root, dirs_exist_ok=True, symlinks=True)
    shutil.copy2(REPO / "README.md", root / "opt/edgebox/README.md")
    (root / "opt/edgebox/VERSION").write_text(_version_line() + "\n")

    tmp = out.with_suffix(".tmp.tar")
    with tarfile.open(tmp, "w") as tar:
        for p in sorted(root.iterdir()):
            tar.add(p, arcname=p.name, filter=_root_owned)
    tmp.rename(out)
    shutil.rmtree(stage)
    for old in cache.glob("app-*.tar"):
        if old != out:
            old.unlink()
    progress.say(f"app: done in {time.monotonic() - t:.0f}s ({out.stat().st_size / 1e6:.0f} MB)")
    return out


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode &= 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    return info


def _version_line() -> str:
    r = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return f"edgebox {r.stdout.strip() or 'unknown'}"


def image_inputs(base: Path, app: Path) -> str:
    h = hashlib.sha256(f"image {STAGE_VERSION['image']} {base.name} {app.name}\n".encode())
    _hash_files(h, [IMAGE_SRC / "genimage.cfg.in", IMAGE_SRC / "finish.sh"], IMAGE_SRC)
    return h.hexdigest()[:16]


def _du(path: Path) -> int:
    """Bytes used by a tree (4 KiB blocks, as ext4 allocates them)."""
    total = 0
    for p in [path, *path.rglob("*")]:
        st = p.lstat()
        total += ((st.st_size + 4095) // 4096) * 4096 if not p.is_symlink() else 4096
    return total


def _round(mib: float) -> int:
    return int((mib + 15) // 16 * 16)


def check_generic(root: Path) -> list[str]:
    """Everything in `root` that would make this card share a secret with every other card."""
    found = [p for p in SECRET_PATHS if (root / p).exists() or (root / p).is_symlink()]
    for pattern in SECRET_GLOBS:
        found += [str(p.relative_to(root)) for p in root.glob(pattern)]
    mid = root / "etc/machine-id"
    if mid.exists() and mid.read_text().strip() not in ("", "uninitialized"):
        found.append("etc/machine-id (not empty)")
    dbus_mid = root / "var/lib/dbus/machine-id"
    if dbus_mid.exists() and not dbus_mid.is_symlink():
        found.append("var/lib/dbus/machine-id")
    return found


def build_image(cache: Path, out_dir: Path, base: Path, app: Path, progress: Progress) -> Path:
    key = image_inputs(base, app)
    image = out_dir / IMAGE_NAME
    stamp = out_dir / "image.json"
    if image.exists() and stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        progress.say(f"image: cached {image.relative_to(REPO)}")
        return image
    t = time.monotonic()
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    root.mkdir(parents=True)
    progress.say("image: unpack base + app")
    progress.run("image", ["tar", "-C", root, "--numeric-owner", "-xpf", base])
    progress.run("image", ["tar", "-C", root, "--numeric-owner", "-xpf", app])
    progress.say("image: finish (users, units, read-only root, generic clean-up)")
    progress.run("image", ["bash", IMAGE_SRC / "finish.sh", root], env={"VENV": VENV})
    leaks = check_generic(root)
    if leaks:
        raise BuildError("image is not generic, it contains: " + ", ".join(leaks))
    # Kernel + initrd beside the image, for the qemu boot test (-M virt boots them directly).
    boot = out_dir / "boot"
    shutil.rmtree(boot, ignore_errors=True)
    boot.mkdir()
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise BuildError("no kernel/initrd in the rootfs /boot")
    shutil.copy2(kernels[-1], boot / "vmlinuz")
    shutil.copy2(initrds[-1], boot / "initrd.img")
    progress.say("image: genimage (FAT32 firmware, ext4 root, ext4 data)")
    gen = work / "genimage"
    for d in ("tmp", "input", "out"):
        (gen / d).mkdir(parents=True, exist_ok=True)
    mib = 1 << 20
    fw_bytes = _du(root / "boot/firmware")
    root_bytes = _du(root) - fw_bytes - _du(root / "data")
    sizes = {
        "fw_size": f"{max(256, _round(fw_bytes * 1.3 / mib + 32))}M",
        "root_size": f"{_round(root_bytes * 1.12 / mib + 96)}M",
        "data_size": f"{DATA_MIB}M",
        "name": IMAGE_NAME,
    }
    cfg = gen / "genimage.cfg"
    cfg.write_text(string.Template((IMAGE_SRC / "genimage.cfg.in").read_text()).substitute(sizes))
    progress.run(
        "image",
        [
            "genimage",
            "--config",
            cfg,
            "--rootpath",
            root,
            "--tmppath",
            gen / "tmp",
            "--inputpath",
            gen / "input",
            "--outputpath",
            gen / "out",
        ],
        cwd=gen,
    )
    tmp_img = out_dir / (IMAGE_NAME + ".tmp")
    shutil.move(gen / "out" / IMAGE_NAME, tmp_img)
    tmp_img.rename(image)
    stamp.write_text(
        json.dumps(
            {
                "key": key,
                "base": base.name,
                "app": app.name,
                "size": image.stat().st_size,
                "version": _version_line(),
            }
        )
        + "\n"
    )
    shutil.rmtree(work)
    progress.say(
        f"image: done in {time.monotonic() - t:.0f}s: {image.relative_to(REPO)} "
        f"({image.stat().st_size / 1e6:.0f} MB)"
    )
    return image


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=REPO / "var" / "image", help="output dir (default var/image)")
    ap.add_argument("--models", type=Path, default=REPO / "var" / "models")
    ap.add_argument(
        "--stage", choices=["base", "app", "image"], default="image", help="stop after this stage"
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("image: needs root (mmdebstrap --mode=root, file ownership in the image)", file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    progress = Progress(out / "logs")
    t = time.monotonic()
    try:
        base = build_base(cache, progress)
        if args.stage == "base":
            return 0
        app = build_app(cache, args.models.resolve(), progress)
        if args.stage == "app":
            return 0
        build_image(cache, out, base, app, progress)
    except BuildError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    progress.say(f"total {time.monotonic() - t:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
