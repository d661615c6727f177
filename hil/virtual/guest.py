"""Runs inside the HIL guest (started by guest-init): system bus, Bluetooth stack, then pytest or the bench.

Environment (from job.env written by hil/virtual/run): HIL_MODE (test|bench), HIL_REPO, HIL_RESULTS,
HIL_EXTRA_ARGS (pytest arguments separated by \\x1f). Exit code: pytest's, the bench's, or 1 when the
stack could not be brought up. Timings go to timings.txt in the results share.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def main() -> int:
    repo = Path(os.environ["HIL_REPO"])
    results = Path(os.environ["HIL_RESULTS"])
    mode = os.environ.get("HIL_MODE", "test")
    extra = [a for a in os.environ.get("HIL_EXTRA_ARGS", "").split("\x1f") if a]
    timings = [f"guest userspace start: {uptime():.1f} s after kernel start"]

    subprocess.run(["dbus-daemon", "--system", "--fork"], check=True)
    try:
        stack.start()
    except stack.StackError as exc:
        print(f"HIL: FAIL: {exc}", flush=True)
        subprocess.run(["dmesg"], stdout=(results / "dmesg.log").open("w"))
        return 1
    ready = uptime()
    timings.append(f"stack ready (dbus, btvirt x{stack.CONTROLLERS}, bluetoothd, powered): {ready:.1f} s")
    print(f"HIL: stack ready at {ready:.1f} s", flush=True)

    py = str(repo / ".venv" / "bin" / "python")
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    env.update(
        {
            "HIL_TIER": "virtual",
            "HIL_BOX_ADAPTER": "hci0",
            # hci0 box; hci1-hci4 phones; hci5-hci7 spare peripherals for the handle spacers
            "HIL_PHONE_ADAPTERS": "hci1,hci2,hci3,hci4",
            "HIL_SPACER": "hci2>hci5;hci3>hci6,hci5;hci4>hci7,hci6,hci5",
            "HIL_BLUETOOTHD_RESTART": f"{py} {here / 'stack.py'} restart-bluetoothd",
            "HIL_BTVIRT": "1",
        }
    )
    started = time.monotonic()
    if mode == "bench":
        with (results / "bench.json").open("w") as out:
            rc = subprocess.run(
                [py, "-m", "edgebox", "bench", "ble", "--json", "--adapter", "hci0",
                 "--phone-adapter", "hci1", "--btvirt", *extra],
                cwd=repo, env=env, stdout=out,
            ).returncode  # fmt: skip
    else:
        with (results / "pytest.log").open("w") as out:
            rc = subprocess.run(
                [py, "-m", "pytest", "-p", "no:cacheprovider", "-o", "testpaths=hil/tests", "-rA",
                 "--durations=5", f"--junitxml={results / 'junit.xml'}", "hil/tests", *extra],
                cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
            ).returncode  # fmt: skip
        tail = (results / "pytest.log").read_text().splitlines()[-1:]
        print(f"HIL: pytest: {' '.join(tail)}", flush=True)
    timings.append(f"{mode} run: {time.monotonic() - started:.1f} s (rc {rc})")
    (results / "timings.txt").write_text("\n".join(timings) + "\n")
    subprocess.run(["dmesg"], stdout=(results / "dmesg.log").open("w"))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
