"""Editable settings: validation with per-field messages, and an atomic, comment-keeping TOML write.

Theory of operation: a setting is a `SettingField` (section, key, type, bounds). `validate(fields,
form)` turns the submitted strings into typed values or a `SettingsInvalid` naming each bad field.
`update_toml(text, values)` rewrites only the `key = value` lines of the changed keys (adding a
missing key at the end of its table, or a missing table at the end of the file), so the shipped
file's comments and layout survive; the result is parsed again and compared with what was asked,
and anything unexpected (a multi-line value, a duplicate) is refused rather than half-applied.
`write_atomically(path, text)` writes a temporary file in the same directory, fsyncs it, renames
it over the old file and fsyncs the directory: a reader sees the old file or the new one, never a
torn one, even across power loss.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from edgebox.admin.backend import SettingField, SettingsInvalid, SettingValue
from edgebox.keyfile import write_atomic

# The keys of the box config (edgebox/box/config.py, docs/box.md) the branch manager may change.
DEFAULT_FIELDS: tuple[SettingField, ...] = (
    SettingField(
        "gateway",
        "url",
        "Gateway URL",
        str,
        "https://host[:port] of the AI gateway; empty: no uplink",
        default="",
    ),
    SettingField(
        "pipeline",
        "quota_tokens",
        "Token quota per phone",
        int,
        "tokens per quota window",
        1,
        10_000_000,
        default=20_000,
    ),
    SettingField(
        "pipeline",
        "quota_window_s",
        "Quota window (seconds)",
        float,
        minimum=60,
        maximum=7 * 86_400,
        default=3600.0,
    ),
    SettingField(
        "pipeline",
        "log_retention_days",
        "Keep the prompt log (days)",
        float,
        minimum=1,
        maximum=3650,
        default=30.0,
    ),
    SettingField("pipeline", "log_text", "Keep prompt and answer text in the log", bool, default=False),
    SettingField(
        "pipeline",
        "injection_flag_threshold",
        "Injection score that flags a prompt (0-1)",
        float,
        minimum=0.0,
        maximum=1.0,
        default=0.5,
    ),
    SettingField(
        "pipeline",
        "injection_block_threshold",
        "Injection score that refuses a prompt (0-1)",
        float,
        minimum=0.0,
        maximum=1.0,
        default=0.8,
    ),
    SettingField(
        "cache",
        "threshold",
        "Cache similarity threshold (0.5-1)",
        float,
        minimum=0.5,
        maximum=1.0,
        default=0.92,
    ),
    SettingField(
        "documents",
        "answer_threshold",
        "Document match needed for a local answer (0-1)",
        float,
        minimum=0.0,
        maximum=1.0,
        default=0.55,
    ),
)


def cross_check(values: Mapping[str, SettingValue]) -> dict[str, str]:
    """Checks that span fields (the same rules the box config applies at start)."""
    problems: dict[str, str] = {}
    flag = values.get("pipeline.injection_flag_threshold")
    block = values.get("pipeline.injection_block_threshold")
    if isinstance(flag, int | float) and isinstance(block, int | float) and flag > block:
        problems["pipeline.injection_flag_threshold"] = "must not be above the refusal threshold"
    return problems


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_url(value: str) -> str | None:
    if not value:
        return None  # empty: no uplink
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL with a host name"
    if parts.username or parts.password or parts.query or parts.fragment:
        return "must not contain credentials, a query or a fragment"
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "has an invalid port"
    return None


def validate(fields: Sequence[SettingField], form: Mapping[str, str]) -> dict[str, SettingValue]:
    values: dict[str, SettingValue] = {}
    problems: dict[str, str] = {}
    for f in fields:
        raw = form.get(f.name)
        if f.kind is bool:
            values[f.name] = raw in ("on", "true", "1")
            continue
        if raw is None:
            problems[f.name] = "is missing"
            continue
        raw = raw.strip()
        if len(raw) > 512 or _CONTROL.search(raw):
            problems[f.name] = "is too long or contains control characters"
            continue
        if f.kind is str:
            problem = _check_url(raw) if f.key == "url" else None
            if problem:
                problems[f.name] = problem
            else:
                values[f.name] = raw
            continue
        try:
            number: float = int(raw) if f.kind is int else float(raw)
        except ValueError:
            problems[f.name] = "must be a whole number" if f.kind is int else "must be a number"
            continue
        if not math.isfinite(number):
            problems[f.name] = "must be a finite number"
        elif f.minimum is not None and number < f.minimum:
            problems[f.name] = f"must be at least {f.minimum:g}"
        elif f.maximum is not None and number > f.maximum:
            problems[f.name] = f"must be at most {f.maximum:g}"
        else:
            values[f.name] = number
    if not problems:
        problems = cross_check(values)
    if problems:
        raise SettingsInvalid(problems)
    return values


def _toml_value(value: SettingValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^(\s*){re.escape(key)}\s*=\s*(.*?)\s*(#.*)?$")


def update_toml(text: str, values: Mapping[str, SettingValue]) -> str:
    lines = text.splitlines()
    for name, value in values.items():
        section, key = name.rsplit(".", 1)
        start = end = None
        for i, line in enumerate(lines):
            m = _HEADER.match(line)
            if m and start is None and m.group(1) == section:
                start = i
            elif m and start is not None and end is None:
                end = i
        rendered = f"{key} = {_toml_value(value)}"
        if start is None:
            lines += ["", f"[{section}]", rendered]
            continue
        stop = len(lines) if end is None else end
        pattern = _key_line(key)
        hits = [i for i in range(start + 1, stop) if pattern.match(lines[i])]
        if len(hits) > 1:
            raise SettingsInvalid({name: "appears more than once in the config file"})
        if hits:
            m = pattern.match(lines[hits[0]])
            assert m is not None
            comment = f"  {m.group(3)}" if m.group(3) else ""
            lines[hits[0]] = f"{m.group(1)}{rendered}{comment}"
        else:
            insert = stop
            while insert > start + 1 and not lines[insert - 1].strip():
                insert -= 1
            lines.insert(insert, rendered)
    out = "\n".join(lines) + "\n"
    try:
        parsed = tomllib.loads(out)
    except tomllib.TOMLDecodeError:
        raise SettingsInvalid({"config": "the config file cannot be updated line by line"}) from None
    for name, value in values.items():
        section, key = name.rsplit(".", 1)
        node: object = parsed
        for part in section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get(key) != value:
            raise SettingsInvalid({name: "could not be written to the config file"})
    return out


def read_values(path: Path, fields: Sequence[SettingField]) -> dict[str, SettingValue]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = {}
    out: dict[str, SettingValue] = {}
    for f in fields:
        node: object = doc
        for part in f.section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(f.key) if isinstance(node, dict) else None
        if isinstance(value, str | int | float | bool):
            out[f.name] = value
        elif f.default is not None:
            out[f.name] = f.default
    return out


def write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    write_atomic(path, text.encode("utf-8"), mode)
