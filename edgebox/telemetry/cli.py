"""`edgebox trace TRACE_ID`: the whole path of one request, for a security investigator.

Theory of operation: the trace id made on the phone (or by the box when the phone sent none) is the
key every hop records under: the box's prompt log (one row per request: phone, decision, model,
per-stage timings; prompt and answer text only if the box was configured to keep text) and the
gateway's audit log (one JSON line per decision on every replica: device, certificate serial, phone,
decision, status, code, classifier score, token counts; anomaly verdicts). This command reads both —
the encrypted box store with its key, and any number of gateway audit files (one per replica) — and
prints the hops in time order. Prompt text is shown only with `--show-text`, and only where the box
kept it. With `--json` the output is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from edgebox.errors import EdgeboxError

_TRACE_ID = re.compile(r"[0-9a-f]{32}")


class TraceUsage(EdgeboxError):
    code = "usage"


def _box_hop(args: argparse.Namespace, trace_id: str) -> dict[str, Any] | None:
    if not args.db:
        return None
    from edgebox.store.keys import load_database_key
    from edgebox.store.store import Store

    key = load_database_key(key_file=args.key_file)
    with Store.open(args.db, key) as store:
        entry = store.prompt_log.get(trace_id)
    if entry is None:
        return None
    hop: dict[str, Any] = {
        "hop": "box",
        "at": entry.created_at,
        "phone": entry.phone_id,
        "decision": entry.decision,
        "model": entry.model,
        "timings_ms": dict(entry.timings_ms),
    }
    if args.show_text:
        hop["prompt_text"] = entry.prompt_text
        hop["answer_text"] = entry.answer_text
    return hop


def _gateway_hops(files: list[Path], trace_id: str) -> list[dict[str, Any]]:
    out = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            raise TraceUsage(f"cannot read audit file {path}") from None
        for line in lines:
            if trace_id not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("trace_id") == trace_id:
                rec["hop"] = "gateway"
                rec["at"] = rec.pop("ts", None)
                rec["audit_file"] = str(path)
                out.append(rec)
    return out


def trace_path(args: argparse.Namespace) -> dict[str, Any]:
    trace_id = args.trace_id.strip().lower()
    if len(trace_id) == 55 and trace_id.startswith("00-"):
        trace_id = trace_id[3:35]  # a whole traceparent was pasted
    if not _TRACE_ID.fullmatch(trace_id):
        raise TraceUsage("TRACE_ID is 32 lowercase hex digits (or a traceparent)")
    hops: list[dict[str, Any]] = []
    box = _box_hop(args, trace_id)
    if box is not None:
        hops.append(box)
    hops += _gateway_hops([Path(p) for p in args.audit or ()], trace_id)
    hops.sort(key=lambda h: h.get("at") or 0.0)
    return {"trace_id": trace_id, "hops": hops}


def _run(args: argparse.Namespace) -> int:
    result = trace_path(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"trace {result['trace_id']}: {len(result['hops'])} record(s)")
        for h in result["hops"]:
            at = h.get("at")
            when = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds") if at else "?"
            rest = {k: v for k, v in h.items() if k not in ("hop", "at") and v not in (None, {}, "")}
            print(f"  {when}  {h['hop']:<8} " + " ".join(f"{k}={v}" for k, v in sorted(rest.items())))
    if not result["hops"]:
        print("no records for this trace", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace", help="show one request's path from the box prompt log and gateway audit"
    )
    p.add_argument("trace_id", help="32 hex digits (or a whole traceparent)")
    p.add_argument("--db", default=None, help="the box's encrypted store (prompt log)")
    p.add_argument("--key-file", default=None, help="development key file for --db")
    p.add_argument("--audit", action="append", default=None, help="a gateway audit file (repeatable)")
    p.add_argument(
        "--show-text", action="store_true", help="include prompt/answer text where the box kept it"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)
