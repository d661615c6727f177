"""Gateway overhead on loopback: CPU per request and added latency, edgebox vs LiteLLM's proxy.

Theory of operation: one run starts a fake OpenAI-compatible upstream that answers instantly (its own
process), then drives the same load — N non-streaming chat completions with distinct prompts at
concurrency C — (a) straight at the upstream, (b) through an `edgebox gateway` process (mTLS with a
real box certificate, strict validation, injection classifier, quota reserve/reconcile, audit, key
injection, forwarding), and (c) through LiteLLM's proxy (installed in a throwaway venv, default
./var/bench-litellm; `pip install 'litellm[proxy]'`) pointed at the same upstream. The stable figure
is CPU time consumed by the gateway's process tree per request (from /proc), reported as a ratio
against the other gateway measured in the same run; added latency is p50 at concurrency 1 against
the direct baseline. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

_CLK = os.sysconf("SC_CLK_TCK")
# Pinned: PyPI litellm 1.82.7/1.82.8 carried a credential stealer; this is the version measured in the notes.
LITELLM_REQUIREMENT = "litellm[proxy]==1.108.7"


def ensure_litellm(venv: Path) -> bool:
    """Create the throwaway LiteLLM venv (PyPI only) if it is missing; True when usable."""
    if (venv / "bin" / "litellm").exists():
        return True
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", LITELLM_REQUIREMENT],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return done.returncode == 0 and (venv / "bin" / "litellm").exists()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=2000, help="requests per throughput phase")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency-requests", type=int, default=400, help="sequential requests for p50")
    p.add_argument(
        "--classifier",
        default="both",
        choices=["both", "rules", "model"],
        help="gateway classifier setting(s) to measure (both: the trained model, the default, and rules)",
    )
    p.add_argument("--litellm-venv", default="var/bench-litellm", help="venv with litellm[proxy] ('' = skip)")
    p.add_argument(
        "--no-install-litellm",
        action="store_true",
        help=f"do not create the LiteLLM venv when missing (default: pip install {LITELLM_REQUIREMENT!r})",
    )


# ---- process helpers -------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a process and all its live descendants (and their reaped children)."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11..14] = utime, stime, cutime, cstime (after the comm field)
        total += sum(int(x) for x in fields[11:15]) / _CLK
        stack.extend(_children(p))
    return total


def _wait_port_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError("process did not start in time")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- fake upstream (run in its own process) ----------------------------------------------------------
_ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }
).encode()


def serve_upstream(port_file: str) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=_ANSWER, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# ---- load ------------------------------------------------------------------------------------------
def _body(i: int) -> bytes:
    return json.dumps(
        {
            "model": "gpt-bench",
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": f"Question {i}: what is the capital of France?"},
            ],
            "max_tokens": 16,
        }
    ).encode()


async def _load(
    url: str, headers: dict[str, str], ctx: ssl.SSLContext | None, n: int, c: int, offset: int = 0
) -> float:
    conn = aiohttp.TCPConnector(limit=c, ssl=ctx if ctx is not None else False)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as s:
        counter = iter(range(offset, offset + n))  # distinct prompts per phase: no classifier memo hits
        errors = 0

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                async with s.post(url, data=_body(i)) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        elapsed = time.perf_counter() - t0
        if errors:
            raise RuntimeError(f"{errors} of {n} requests failed against {url}")
        return elapsed


async def _latencies(url: str, headers: dict[str, str], ctx: ssl.SSLContext | None, n: int) -> list[float]:
    conn = aiohttp.TCPConnector(limit=1, ssl=ctx if ctx is not None else False)
    out = []
    async with aiohttp.ClientSession(connector=conn, headers=headers) as s:
        for i in range(n + 20):
            body = _body(10_000_000 + i)  # prompts unseen in the throughput phase: no memo hits
            t0 = time.perf_counter()
            async with s.post(url, data=body) as r:
                await r.read()
                assert r.status == 200, r.status
            if i >= 20:  # warm-up excluded
                out.append((time.perf_counter() - t0) * 1000)
    return out


def _measure(
    name: str, pid: int | None, url: str, headers: dict[str, str], ctx: ssl.SSLContext | None, args: Any
) -> dict[str, float]:
    asyncio.run(
        _load(url, headers, ctx, min(200, args.requests), args.concurrency, offset=5_000_000)
    )  # warm-up
    cpu0 = tree_cpu_seconds(pid) if pid else 0.0
    elapsed = asyncio.run(_load(url, headers, ctx, args.requests, args.concurrency))
    cpu1 = tree_cpu_seconds(pid) if pid else 0.0
    lat = asyncio.run(_latencies(url, headers, ctx, args.latency_requests))
    return {
        f"{name}_rps": round(args.requests / elapsed, 1),
        f"{name}_cpu_ms_per_req": round((cpu1 - cpu0) * 1000 / args.requests, 4),
        f"{name}_p50_ms": round(statistics.median(lat), 3),
    }


def _start(
    cmd: list[str], port_file: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, _wait_port_file(port_file, proc)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(
    url: str, headers: dict[str, str], proc: subprocess.Popen[bytes], timeout: float = 180
) -> None:
    async def probe() -> bool:
        try:
            async with aiohttp.ClientSession(headers=headers) as s, s.post(url, data=_body(0)) as r:
                await r.read()
                return r.status == 200
        except aiohttp.ClientError:
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("litellm exited early")
        if asyncio.run(probe()):
            return
        time.sleep(0.5)
    raise RuntimeError("litellm did not become ready")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgebox.pki.ca import DeviceCA, key_pem, make_csr, new_private_key

    result: dict[str, Any] = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
    }
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="edgebox-bench-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            up, up_port = _start(
                [sys.executable, "-m", "edgebox.gateway.bench", "--serve-upstream", str(tmp / "up.port")],
                tmp / "up.port",
            )
            procs.append(up)
            up_url = f"http://127.0.0.1:{up_port}/v1"

            # (a) direct
            result.update(
                _measure(
                    "direct",
                    up.pid,
                    up_url + "/chat/completions",
                    {"Content-Type": "application/json"},
                    None,
                    args,
                )
            )

            # (b) edgebox gateway (mTLS, validation, classifier, quota, audit, forwarding), once per
            # classifier setting. The per-device in-flight bound (quota_max_inflight, 16 by default)
            # would refuse a 32-wide load from one box with 429: it is raised to the load's width.
            ca = DeviceCA.create(tmp / "pki")
            ca.write_server_cert(["127.0.0.1"])
            key = new_private_key()
            issued = ca.issue_box(make_csr(key), "bench-box")
            (tmp / "box.crt").write_bytes(issued.pem)
            (tmp / "box.key").write_bytes(key_pem(key))
            (tmp / "upstream.key").write_text("sk-bench-0123456789abcdef\n")
            ctx = ssl.create_default_context(cafile=str(ca.cert_path))
            ctx.load_cert_chain(str(tmp / "box.crt"), str(tmp / "box.key"))
            settings = ["model", "rules"] if args.classifier == "both" else [args.classifier]
            result["edgebox_quota_max_inflight"] = max(16, args.concurrency)
            for setting in settings:
                name = f"edgebox_{setting}"
                result.update(_measure_gateway(name, setting, tmp, up_url, ctx, args))
                result[f"{name}_added_p50_ms"] = round(result[f"{name}_p50_ms"] - result["direct_p50_ms"], 3)
            first = f"edgebox_{settings[0]}"
            # The headline figures are the default setting's (the trained model when measured).
            result["edgebox_cpu_ms_per_req"] = result[f"{first}_cpu_ms_per_req"]
            result["edgebox_added_p50_ms"] = result[f"{first}_added_p50_ms"]

            # (c) LiteLLM proxy
            venv = Path(args.litellm_venv) if args.litellm_venv else None
            if venv is not None and not args.no_install_litellm:
                ensure_litellm(venv)
            exe = venv / "bin" / "litellm" if venv else None
            if exe is None or not exe.exists():
                result["litellm"] = "skipped: no litellm[proxy] venv (see module docstring)"
            else:
                port = _free_port()
                (tmp / "litellm.yaml").write_text(
                    "model_list:\n  - model_name: gpt-bench\n    litellm_params:\n"
                    f"      model: openai/gpt-bench\n      api_base: {up_url}\n"
                    "      api_key: sk-bench-upstream\n"
                    "general_settings:\n  master_key: sk-bench-master\n"
                    "litellm_settings:\n  telemetry: false\n"
                )
                env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
                ll = subprocess.Popen(
                    [
                        str(exe),
                        "--config",
                        str(tmp / "litellm.yaml"),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--num_workers",
                        "1",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                procs.append(ll)
                hdrs = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-master"}
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                _wait_http(url, hdrs, ll)
                result["litellm_version"] = _litellm_version(venv)  # type: ignore[arg-type]
                result.update(_measure("litellm", ll.pid, url, hdrs, None, args))
                result["litellm_added_p50_ms"] = round(result["litellm_p50_ms"] - result["direct_p50_ms"], 3)
                result["cpu_ratio_litellm_over_edgebox"] = round(
                    result["litellm_cpu_ms_per_req"] / result["edgebox_cpu_ms_per_req"], 2
                )
        finally:
            for p in reversed(procs):
                _stop(p)
    return result


def _measure_gateway(
    name: str, classifier: str, tmp: Path, up_url: str, ctx: ssl.SSLContext, args: Any
) -> dict[str, Any]:
    """Start an `edgebox gateway` with `classifier`, measure it, stop it; its figures under `name`."""
    audit = tmp / f"audit-{classifier}.jsonl"
    conf = tmp / f"gw-{classifier}.toml"
    port_file = tmp / f"gw-{classifier}.port"
    conf.write_text(
        f'listen_port = 0\npki_dir = "{tmp / "pki"}"\nupstream_url = "{up_url}"\n'
        f'upstream_key_file = "{tmp / "upstream.key"}"\naudit_file = "{audit}"\n'
        f"quota_tokens = 1000000000\nquota_max_inflight = {max(16, args.concurrency)}\n"
        f'classifier = "{classifier}"\n'
        "[anomaly]\nmax_requests_per_rate_window = 100000000\nmax_identical_prompts = 100000000\n"
    )
    gw, gw_port = _start(
        [sys.executable, "-m", "edgebox", "gateway", "--config", str(conf), "--port-file", str(port_file)],
        port_file,
    )
    try:
        out: dict[str, Any] = _measure(
            name,
            gw.pid,
            f"https://127.0.0.1:{gw_port}/v1/chat/completions",
            {"Content-Type": "application/json"},
            ctx,
            args,
        )
    finally:
        _stop(gw)
    out[f"{name}_audit_records"] = audit.read_text().count("\n")
    return out


def _litellm_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m;print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def _main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--serve-upstream":
        serve_upstream(argv[1])
        return
    raise SystemExit("usage: edgebox bench gateway --json")


if __name__ == "__main__":
    _main(sys.argv[1:])
