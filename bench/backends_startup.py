"""Benchmark: start-up time of ``ptychopinn backends`` (discovery and listing).

Run ``.venv/bin/python bench/backends_startup.py``; prints ONE JSON object to stdout
with the wall time of fresh interpreters (best and median of a few runs) for:

- ``python -c pass``: the interpreter alone (the floor);
- ``import ptychopinn_core.backends``: the plugin system without discovery;
- ``ptychopinn backends --json``: the whole command, discovery of every installed
  backend included (plugin modules imported, frameworks not);
- ``ptychopinn backends --json --devices``: the same, asking each framework for its
  devices (imports the frameworks: the price listing avoids).

And which frameworks each variant imported. Nothing is asserted: timings belong to
benchmarks, not tests.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time

REPEATS = 5
FRAMEWORKS = ("tensorflow", "torch", "lightning", "keras")
# The console script's entry point (`ptychopinn` = ptychopinn_core.cli.main:main).
CLI = "import sys; from ptychopinn_core.cli.main import main; sys.exit(main(sys.argv[1:]))"
# Appended to a variant to report the frameworks it imported, on stderr.
REPORT_FRAMEWORKS = (
    "import atexit, sys; atexit.register(lambda: sys.stderr.write('FRAMEWORKS=' + ','.join(sorted("
    f"{set(FRAMEWORKS)!r} & {{name.split('.')[0] for name in sys.modules}})) + '\\n'))"
)

VARIANTS = {
    "python_only": ["-c", "pass"],
    "import_backends": ["-c", "import ptychopinn_core.backends"],
    "backends_json": ["-c", f"{REPORT_FRAMEWORKS}\n{CLI}", "backends", "--json"],
    "backends_json_devices": ["-c", f"{REPORT_FRAMEWORKS}\n{CLI}", "backends", "--json", "--devices"],
}


def run_variant(arguments: list[str]) -> dict[str, object]:
    timings = []
    frameworks: list[str] = []
    exit_code = 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, check=False)
        timings.append(time.perf_counter() - start)
        exit_code = result.returncode
        for line in result.stderr.splitlines():
            if line.startswith("FRAMEWORKS="):
                frameworks = [name for name in line.removeprefix("FRAMEWORKS=").split(",") if name]
    return {
        "best_s": round(min(timings), 4),
        "median_s": round(statistics.median(timings), 4),
        "repeats": REPEATS,
        "exit_code": exit_code,
        "frameworks_imported": frameworks,
    }


def main() -> None:
    results = {name: run_variant(arguments) for name, arguments in VARIANTS.items()}
    listing = subprocess.run([sys.executable, "-c", CLI, "backends", "--json"], capture_output=True, text=True)
    try:
        backends = {entry["name"]: entry["status"] for entry in json.loads(listing.stdout)["backends"]}
    except (ValueError, KeyError):
        backends = {}
    report = {
        "benchmark": "backends_startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "backends": backends,
        "timings": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
