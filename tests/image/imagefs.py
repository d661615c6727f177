"""Read a built SD image without mounting it (no loop partitions or vfat on CI machines):
the MBR with struct, ext4 partitions with debugfs (`image?offset=N`), FAT with mtools (`image@@N`)."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Partition:
    index: int
    type: int
    start: int  # bytes
    size: int  # bytes


def partitions(image: Path) -> list[Partition]:
    with image.open("rb") as fh:
        mbr = fh.read(512)
    assert mbr[510:512] == b"\x55\xaa", "no MBR signature"
    out = []
    for i in range(4):
        entry = mbr[446 + 16 * i : 446 + 16 * (i + 1)]
        ptype = entry[4]
        lba, sectors = struct.unpack("<II", entry[8:16])
        if ptype:
            out.append(Partition(i + 1, ptype, lba * 512, sectors * 512))
    return out


def ext4_spec(image: Path, part: Partition) -> str:
    return f"{image}?offset={part.start}"


def debugfs(image: Path, part: Partition, request: str) -> str:
    r = subprocess.run(
        ["debugfs", "-R", request, ext4_spec(image, part)], capture_output=True, text=True, timeout=120
    )
    return r.stdout


def rdump(image: Path, part: Partition, path: str, dest: Path) -> Path:
    """Copy one directory tree out of an ext4 partition (dest/<basename>)."""
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["debugfs", "-R", f"rdump {path} {dest}", ext4_spec(image, part)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return dest / Path(path).name


def label(image: Path, part: Partition) -> str:
    r = subprocess.run(["dumpe2fs", "-h", ext4_spec(image, part)], capture_output=True, text=True, timeout=60)
    for line in r.stdout.splitlines():
        if line.startswith("Filesystem volume name:"):
            return line.split(":", 1)[1].strip()
    return ""


def fat_files(image: Path, part: Partition) -> list[str]:
    r = subprocess.run(
        ["mdir", "-/", "-b", "-i", f"{image}@@{part.start}", "::"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


def fat_read(image: Path, part: Partition, name: str) -> bytes:
    r = subprocess.run(
        ["mtype", "-i", f"{image}@@{part.start}", f"::{name}"],
        capture_output=True,
        timeout=60,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    return r.stdout
