"""Inference of every installed backend on the same bundle and data (and, optionally, the
size of a fresh environment with each).

Run from the repository root::

    .venv/bin/python bench/inference.py                          # every installed backend, N = 64 and 128
    .venv/bin/python bench/inference.py --backends onnx,pytorch --repeats 5 --json out.json
    .venv/bin/python bench/inference.py --no-inference --env-sizes   # only the environment sizes
    .venv/bin/python bench/inference.py --pattern-sizes 64 --n-filters-scale 2 --published PEER
    .venv/bin/python bench/inference.py --pattern-sizes 64 --architecture space_to_depth

For every case (``N`` in ``--pattern-sizes`` x gridsize in ``--gridsizes``) it writes ONE
bundle (the core's seeded initial weights, ``initial_weights(parameter_specs(model),
seed)``, with ``n_filters_scale`` 1 unless ``--n-filters-scale``, the ``encoder_decoder`` unless
``--architecture``) and ONE simulated scan
(:func:`ptychopinn_core.simulation.make_demo_scan`, 512 positions at N = 64 and 128 at
N = 128: the same pattern pixels at every N), and every backend runs that very bundle
on that very scan. Each (backend, case) runs in a fresh subprocess
(``bench/measure_backend.py --plan``), which measures

- **predict** (``measure_backend``'s ``inference``): ``BackendModel.predict`` of every
  group in one call (network and overlap constraint), repeated after a warm-up;
- **reconstruct**: :func:`ptychopinn_core.workflow.reconstruct` (the model built from
  the bundle, prediction in ``inference.chunk_size`` chunks and stitching), repeated
  after a warm-up; ``build_model_s`` is the construction's share of a call;

in patterns per second (``C = gridsize**2`` patterns per group, every position seeds a
group), plus the subprocess's peak resident memory and its peak before the timed part
(framework, data and model: "setup"). ``--repeats`` rounds are interleaved, the backend
order rotated each round, so a change of the machine's load falls on every backend;
the JSON holds the median and the spread (min, max) across rounds, the largest peak
memories, and per case the ratio of the ONNX Runtime backend's median to the fastest
framework backend's (goal: at least 1 on this CPU, reported, never asserted).

``--published DIR`` adds the published PtychoPINN to every N = 64 case it has a model
for (``DIR/models/g<gridsize>``), timed by ``bench/published_peer.py`` in its own
environment on the case's very scan (its own network, trained by its own script: the
same width only with ``--n-filters-scale 2``, its default); per case ``vs_published``
holds each backend's medians over the peer's (goal: reconstruct, i.e. predict + stitch,
at least 2x).

``--env-sizes`` (slow: minutes, needs the package index) builds the wheels of the core
and of the three backends, installs ``ptychopinn-core``, ``ptychopinn-core[onnx]``,
``ptychopinn-core[torch]`` and ``ptychopinn-core[tf]`` into four fresh venvs with pip,
and records each one's size (whole venv and site-packages, apparent file sizes), its
distributions and the largest, the size each backend adds over the core alone, and
whether the ``[onnx]`` environment imports, or has installed, TensorFlow or PyTorch
(goal: at most a tenth of the ``[torch]`` environment, neither framework). The venvs are
deleted afterwards.

Prints a table and ONE JSON object (to ``--json OUT``, written atomically, else to
stdout after the table). Exit status 1 when a measurement failed (recorded as
``"error"``; the others still run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import ModelConfig

from benchlib import finish, machine_info
from suite import MeasurementError, run_json

#: Every value of ``model.architecture`` (the config field is the one list).
ARCHITECTURES = typing.get_args(ModelConfig.model_fields["architecture"].annotation)

REPO = Path(__file__).resolve().parents[1]
#: Pattern pixels per case: 512 positions at N = 64, 128 at N = 128.
CASE_PIXELS = 512 * 64 * 64
#: The framework of the backend compared with the framework backends.
ONNX_FRAMEWORK = "onnxruntime"
GOALS = {
    "speed": "ONNX Runtime's patterns/s at least those of the fastest framework backend "
             "(ratio >= 1), N = 64 and 128, on this CPU",
    "size": "a fresh [onnx] environment at most a tenth of the size of the [torch] one "
            "(ratio <= 0.1), with neither TensorFlow nor PyTorch imported or installed",
}
#: Environment variables that change the frameworks' threading, recorded with the settings.
THREAD_VARIABLES = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Measures of each subprocess and their names in the JSON.
MEASURES = {"inference": "predict", "reconstruct": "reconstruct"}
#: The published PtychoPINN's name among the backends of a case (``--published``).
PEER = "published"
#: The pattern size of the peer's models (its default N).
PEER_PATTERN_SIZE = 64
PEER_GOAL = "each of our backends' reconstruct (predict + stitch) at least 2x the published code's, same width"


def case_key(size: int, gridsize: int) -> str:
    return f"N{size}_g{gridsize}"


def default_positions(size: int) -> int:
    """Positions of the scan at pattern size ``size``: the same pattern pixels at every N."""
    return max(8, CASE_PIXELS // (size * size))


def parse_positions(text: str | None, sizes: list[int]) -> dict[int, int]:
    """``--positions``: one count for every N, or ``N=COUNT,...`` (the others: the default)."""
    positions = {size: default_positions(size) for size in sizes}
    if text is None:
        return positions
    if "=" not in text:
        return {size: int(text) for size in sizes}
    for item in text.split(","):
        size, _, count = item.partition("=")
        positions[int(size)] = int(count)
    return positions


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


# -- the shared bundles and scans -------------------------------------------------------


def write_case(folder: Path, size: int, gridsize: int, n_positions: int, n_filters_scale: int,
               architecture: str, seed: int) -> dict[str, Any]:
    """Write the bundle and scan of one case into ``folder``; their paths and digest."""
    import numpy as np

    from ptychopinn_core.config import Config
    from ptychopinn_core.data import write_scan
    from ptychopinn_core.model.bundle import ModelBundle, bundle_digest, make_manifest, write_bundle
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.simulation import make_demo_scan

    config = Config.from_dict({
        "model": {"pattern_size": size, "gridsize": gridsize, "n_filters_scale": n_filters_scale,
                  "architecture": architecture},
        "training": {"seed": seed},
    })
    scan = make_demo_scan(n_positions, size, seed=seed)
    manifest = make_manifest(mode=config.training.mode, backend="none", framework="numpy",
                             framework_version=np.__version__)  # seeded initial weights: trained by nobody
    bundle = ModelBundle(manifest=manifest, config=config, state=prepare_model_state(scan, config),
                         weights=initial_weights(parameter_specs(config.model), seed))
    key = case_key(size, gridsize)
    bundle_path, scan_path = folder / f"{key}.zip", folder / f"{key}.npz"
    write_bundle(bundle_path, bundle)
    write_scan(scan_path, scan)
    return {"bundle": str(bundle_path), "scan": str(scan_path), "bundle_digest": bundle_digest(bundle)}


def case_plan(size: int, gridsize: int, n_positions: int, n_filters_scale: int, architecture: str, seed: int,
              seconds: float, calls: int, files: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``measure_backend.py --plan`` of one (backend, case): predict, then reconstruct."""
    return [
        {"measure": measure, "pattern_size": size, "gridsize": gridsize, "n_filters_scale": n_filters_scale,
         "architecture": architecture, "n_positions": n_positions, "seconds": seconds, "repeats": calls, "seed": seed,
         "bundle": files["bundle"], "scan": files["scan"]}
        for measure in MEASURES
    ]


# -- summary ----------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize_runs(runs: list[dict[str, Any]], flops_per_pattern: float | None) -> dict[str, Any]:
    """One backend's rounds of one case: medians and spreads; ``error`` when every round failed.
    ``flops_per_pattern`` None (the published peer, another network): no GFLOP/s."""
    good = [run for run in runs if "error" not in run]
    errors = [run["error"] for run in runs if "error" in run]
    if not good:
        return {"error": errors[-1], "errors": errors, "rounds": runs}
    summary: dict[str, Any] = {"framework": good[0]["framework"], "framework_version": good[0]["framework_version"],
                               "device": good[0]["device"], "rounds_measured": len(good)}
    for name in MEASURES.values():
        rates = [run[name]["patterns_per_s"] for run in good]
        summary[f"{name}_patterns_per_s"] = _spread(rates)
    summary["predict_gflops"] = (None if flops_per_pattern is None
                                 else summary["predict_patterns_per_s"]["median"] * flops_per_pattern / 1e9)
    for key in ("n_parameters", "n_filters_scale"):  # what the published peer reports of its network
        if key in good[0]:
            summary[key] = good[0][key]
    summary["build_model_s"] = statistics.median(run["reconstruct"]["build_model_s"] for run in good)
    summary["peak_rss_mib"] = max(run["peak_rss_bytes"] for run in good) / 2**20
    summary["setup_rss_mib"] = max(run["setup_rss_bytes"] for run in good) / 2**20
    if errors:
        summary["errors"] = errors
    summary["rounds"] = runs
    return summary


def compare(backends: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """ONNX Runtime's median over the fastest framework backend's, for predict and reconstruct."""
    measured = {name: record for name, record in backends.items() if "error" not in record and name != PEER}
    onnx = [name for name, record in measured.items() if record["framework"] == ONNX_FRAMEWORK]
    frameworks = [name for name, record in measured.items() if record["framework"] != ONNX_FRAMEWORK]
    if not onnx or not frameworks:
        return {"skipped": "needs the onnx backend and a framework backend, both measured"}
    result: dict[str, Any] = {"onnx_backend": onnx[0]}
    for name in MEASURES.values():
        rate = lambda backend: measured[backend][f"{name}_patterns_per_s"]["median"]  # noqa: E731
        fastest = max(frameworks, key=rate)
        ratio = rate(onnx[0]) / rate(fastest)
        result[name] = {"fastest_framework_backend": fastest, "ratio": ratio, "meets_goal": ratio >= 1}
    return result


# -- environment sizes ------------------------------------------------------------------

#: Venv name to what pip installs into it (torch pinned in the same command: any other
#: resolution of torch downloads its multi-GB CUDA build).
ENVIRONMENTS = {
    "core": ["ptychopinn-core"],
    "onnx": ["ptychopinn-core[onnx]"],
    "torch": ["ptychopinn-core[torch]", "torch==2.13.0"],
    "tf": ["ptychopinn-core[tf]"],
}
#: Projects whose wheels the venvs install from (--find-links).
PROJECTS = (REPO, REPO / "ptychopinn_onnx", REPO / "ptychopinn_torch", REPO / "ptychopinn_tf")

#: Run by each venv's interpreter: its distributions with sizes, and the backends it finds.
DESCRIBE_ENV = r"""
import importlib.metadata as metadata, json, os, sysconfig
distributions = []
for dist in metadata.distributions():
    size = 0
    for file in dist.files or ():
        path = file.locate()
        try:
            size += os.lstat(path).st_size
        except OSError:
            pass
    distributions.append({"name": dist.metadata["Name"], "version": dist.version, "bytes": size})
from ptychopinn_core.backends import BackendRegistry
backends = {entry.name: entry.status for entry in BackendRegistry.discover().entries()}
print(json.dumps({"site_packages": sysconfig.get_paths()["purelib"], "distributions": distributions,
                  "backends": backends}))
"""

#: Run by the [onnx] venv's interpreter: no framework imported or installed, and a prediction works.
CHECK_ONNX_ENV = r"""
import importlib.util, json, sys
import ptychopinn_onnx.plugin, onnxruntime, ptychopinn_core.cli.main
frameworks = ("tensorflow", "torch")
imported_by_modules = sorted(name for name in frameworks if name in sys.modules)
import numpy as np
from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.inference_chunks import prepare_inference_inputs
from ptychopinn_core.simulation import make_demo_scan
config = Config.from_dict({"model": {"pattern_size": 32}})
scan = make_demo_scan(8, 32, seed=0)
state = prepare_model_state(scan, config)
model = BackendRegistry.discover().get("onnx").build_model(config, state, initial_weights(parameter_specs(config.model), 0))
chunk = next(iter(prepare_inference_inputs(scan, config, state, 8)))
patches = model.predict(chunk.diffraction, chunk.offsets_xy)
print(json.dumps({
    "imported_by_the_modules": imported_by_modules,
    "imported_after_a_prediction": sorted(name for name in frameworks if name in sys.modules),
    "installed": sorted(name for name in frameworks if importlib.util.find_spec(name) is not None),
    "prediction_finite": bool(np.all(np.isfinite(patches))),
}))
"""


def _command(args: list[Any], env: dict[str, str], timeout: float = 1800) -> str:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise MeasurementError(f"{lines[-1]} (exit status {result.returncode} of {' '.join(map(str, args[:6]))} ...)")
    return result.stdout


def _tree_bytes(folder: Path) -> int:
    """Apparent size of every file under ``folder`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _mib(value: float) -> float:
    return value / 2**20


def measure_environment(name: str, requirements: list[str], wheels: Path, folder: Path, env: dict[str, str],
                        report) -> dict[str, Any]:
    """Create a venv, install ``requirements`` from ``wheels`` with pip, describe it, delete it."""
    venv = folder / f"venv-{name}"
    python = venv / "bin" / "python"
    try:
        report(f"env {name}: venv and pip install {' '.join(requirements)}")
        _command([sys.executable, "-m", "venv", venv], env)
        started = time.perf_counter()
        _command([python, "-m", "pip", "install", "-q", "--find-links", wheels, *requirements], env)
        install_s = time.perf_counter() - started
        described = json.loads(_command([python, "-c", DESCRIBE_ENV], env).strip().splitlines()[-1])
        distributions = sorted(described["distributions"], key=lambda dist: (-dist["bytes"], dist["name"]))
        record: dict[str, Any] = {
            "requirements": requirements,
            "install_s": install_s,
            "venv_mib": _mib(_tree_bytes(venv)),
            "site_packages_mib": _mib(_tree_bytes(Path(described["site_packages"]))),
            "distributions": len(distributions),
            "largest": [{"name": dist["name"], "version": dist["version"], "mib": _mib(dist["bytes"])}
                        for dist in distributions[:3]],
            "backends": described["backends"],
            "distribution_mib": {dist["name"]: _mib(dist["bytes"]) for dist in distributions},
        }
        if name == "onnx":
            record["frameworks"] = json.loads(_command([python, "-c", CHECK_ONNX_ENV], env).strip().splitlines()[-1])
        return record
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def environment_sizes(report) -> dict[str, Any]:
    """Build the four wheels, measure the four venvs (one at a time, each deleted after), compare."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    results: dict[str, Any] = {"sizes": "apparent sizes of the files, MiB", "environments": {}}
    with tempfile.TemporaryDirectory(prefix="ptychopinn-env-sizes-") as temporary:
        folder = Path(temporary)
        wheels = folder / "wheels"
        report("env: building the wheels of the core and the three backends")
        try:
            _command([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, *PROJECTS], env)
        except (MeasurementError, subprocess.TimeoutExpired) as error:
            return {**results, "error": f"building the wheels: {error}"}
        results["wheels"] = sorted(path.name for path in wheels.glob("*.whl"))
        for name, requirements in ENVIRONMENTS.items():
            try:
                results["environments"][name] = measure_environment(name, requirements, wheels, folder, env, report)
            except (MeasurementError, subprocess.TimeoutExpired, ValueError) as error:
                results["environments"][name] = {"requirements": requirements, "error": str(error)}
    results["comparison"] = compare_environments(results["environments"])
    return results


def compare_environments(environments: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What each backend adds over the core alone, and [onnx] over [torch]."""
    measured = {name: record for name, record in environments.items() if "error" not in record}
    comparison: dict[str, Any] = {}
    if "core" in measured:
        core = measured["core"]
        comparison["added_over_core_mib"] = {
            name: {"venv": record["venv_mib"] - core["venv_mib"],
                   "site_packages": record["site_packages_mib"] - core["site_packages_mib"],
                   "distributions": record["distributions"] - core["distributions"],
                   # where the added size goes: the distributions the core venv lacks, largest first
                   "added_distributions": {dist: size for dist, size in record["distribution_mib"].items()
                                           if dist not in core["distribution_mib"]}}
            for name, record in measured.items() if name != "core"
        }
    if "onnx" in measured and "torch" in measured:
        onnx, torch = measured["onnx"], measured["torch"]
        comparison["onnx_over_torch"] = {
            "venv": onnx["venv_mib"] / torch["venv_mib"],
            "site_packages": onnx["site_packages_mib"] / torch["site_packages_mib"],
        }
        added = comparison.get("added_over_core_mib", {})
        if "onnx" in added and "torch" in added:
            comparison["onnx_over_torch"]["added_over_core"] = added["onnx"]["venv"] / added["torch"]["venv"]
        frameworks = onnx.get("frameworks", {})
        comparison["meets_goal"] = (
            comparison["onnx_over_torch"]["venv"] <= 0.1
            and not frameworks.get("imported_by_the_modules") and not frameworks.get("imported_after_a_prediction")
            and not frameworks.get("installed")
        )
    return comparison


# -- the run ----------------------------------------------------------------------------


def measure_inference(names: list[str], args: argparse.Namespace, report) -> dict[str, Any]:
    """Every case for every backend, ``args.repeats`` interleaved rounds; per case the summary."""
    from ptychopinn_core.model.flops import model_flops

    sizes, gridsizes = _ints(args.pattern_sizes), _ints(args.gridsizes)
    positions = parse_positions(args.positions, sizes)
    cases: dict[str, Any] = {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="ptychopinn-bench-inference-") as temporary:
        plans = {}
        for size in sizes:
            for gridsize in gridsizes:
                key = case_key(size, gridsize)
                report(f"{key}: bundle and scan of {positions[size]} positions")
                files = write_case(Path(temporary), size, gridsize, positions[size], args.n_filters_scale,
                                   args.architecture, args.seed)
                flops = model_flops(ModelConfig(pattern_size=size, gridsize=gridsize,
                                                n_filters_scale=args.n_filters_scale, architecture=args.architecture))
                cases[key] = {"pattern_size": size, "gridsize": gridsize, "n_positions": positions[size],
                              "patterns": positions[size] * gridsize**2, "n_filters_scale": args.n_filters_scale,
                              "architecture": args.architecture, "bundle_digest": files["bundle_digest"], "flops_per_pattern": flops.inference}
                plans[key] = case_plan(size, gridsize, positions[size], args.n_filters_scale, args.architecture,
                                       args.seed, args.seconds, args.calls, files)
                runs[key] = {name: [] for name in names}
                if peer_model(args.published, size, gridsize) is not None:
                    runs[key][PEER] = []
        for round_index in range(args.repeats):
            for key, plan in plans.items():
                members = list(runs[key])
                shift = round_index % len(members)
                for name in members[shift:] + members[:shift]:
                    report(f"round {round_index + 1}/{args.repeats} {key} {name}")
                    if name == PEER:
                        case = cases[key]
                        run = _run_published(args.published, peer_model(args.published, case["pattern_size"],
                                                                         case["gridsize"]),
                                             plan[0]["scan"], args.seconds, args.calls, round_index)
                    else:
                        run = _run_case(name, args.device, plan, round_index)
                    runs[key][name].append(run)
    for key, case in cases.items():
        case["backends"] = {name: summarize_runs(runs[key][name], None if name == PEER else case["flops_per_pattern"])
                            for name in runs[key]}
        case["onnx_vs_fastest_framework"] = compare(case["backends"])
        if PEER in case["backends"]:
            case["vs_published"] = compare_with_peer(case["backends"])
    return cases


def peer_model(folder: Path | None, size: int, gridsize: int) -> Path | None:
    """The published code's model for a case, ``FOLDER/models/g<gridsize>`` (its N is 64), if present."""
    if folder is None or size != PEER_PATTERN_SIZE:
        return None
    model = folder / "models" / f"g{gridsize}"
    return model if model.is_dir() else None


def _run_published(folder: Path, model: Path, scan: str, seconds: float, calls: int,
                   round_index: int) -> dict[str, Any]:
    """The published code's predict and reconstruct on the case's scan, in its own interpreter."""
    try:
        output = run_json("published_peer.py", "measure", "--source", str(folder / "PtychoPINN"),
                          "--model", str(model), "--scan", scan, "--seconds", str(seconds), "--calls", str(calls),
                          python=str(folder / "venv-tf" / "bin" / "python"))
    except (MeasurementError, subprocess.TimeoutExpired) as error:
        return {"round": round_index, "error": str(error)}
    return {"round": round_index, **output}


def compare_with_peer(backends: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each of our backends' median over the published code's, for predict and reconstruct."""
    peer = backends[PEER]
    if "error" in peer:
        return {"skipped": "the published code's measurement failed"}
    result: dict[str, Any] = {"goal": PEER_GOAL}
    for name, record in backends.items():
        if name == PEER or "error" in record:
            continue
        result[name] = {measure: record[f"{measure}_patterns_per_s"]["median"]
                        / peer[f"{measure}_patterns_per_s"]["median"] for measure in MEASURES.values()}
        result[name]["meets_goal"] = result[name]["reconstruct"] >= 2
    return result


def _run_case(name: str, device: str, plan: list[dict[str, Any]], round_index: int) -> dict[str, Any]:
    """One (backend, case) in a fresh subprocess: its two figures and peak memories."""
    try:
        output = run_json("measure_backend.py", "--backend", name, "--device", device, "--plan", json.dumps(plan))
    except (MeasurementError, subprocess.TimeoutExpired) as error:
        return {"round": round_index, "error": str(error)}
    records = dict(zip(MEASURES.values(), output["records"], strict=True))
    keep = ("patterns_per_s", "best_patterns_per_s", "calls", "seconds_per_call", "build_model_s")
    return {
        "round": round_index, "framework": output["framework"], "framework_version": output["framework_version"],
        "device": output["device"],
        **{measure: {field: record[field] for field in keep if field in record} for measure, record in records.items()},
        "peak_rss_bytes": max(record["peak_rss_bytes"] for record in records.values()),
        "setup_rss_bytes": records["predict"]["setup_rss_bytes"],
    }


def _failed(results: dict[str, Any]) -> list[str]:
    failed = []
    for key, case in results.get("cases", {}).items():
        failed += [f"{name}.{key}" for name, record in case["backends"].items() if "errors" in record]
    sizes = results.get("env_sizes")
    if sizes is not None:
        if "error" in sizes:
            failed.append("env_sizes")
        failed += [f"env_sizes.{name}" for name, record in sizes["environments"].items() if "error" in record]
    return failed


def _rate(spread: dict[str, float]) -> str:
    return f"{spread['median']:,.1f} ({spread['min']:,.1f}-{spread['max']:,.1f})"


def print_tables(console: Console, results: dict[str, Any]) -> None:
    machine = results["machine"]
    settings = results["settings"]
    runs = (f"{settings['repeats']} round(s), n_filters_scale {settings['n_filters_scale']}, "
            f"device {settings['device']}; " if "cases" in results else "")
    console.print(f"[bold]{escape(machine['cpu_model'])}[/], {machine['cpu_count']} cores, "
                  f"{machine['memory_bytes'] / 2**20:,.0f} MiB; Python {machine['python']}; "
                  f"{runs}{results['wall_s']:.0f} s")
    if results.get("cases"):
        table = Table(title="Inference, patterns/s: median (min-max) over rounds; RSS: subprocess peak, setup")
        for column in ("case", "backend", "predict", "reconstruct", "build s", "GFLOP/s", "RSS MiB", "setup MiB"):
            table.add_column(column, justify="left" if column in ("case", "backend") else "right")
        for key, case in results["cases"].items():
            label = f"{key} ({case['n_positions']} pos.)"
            for name, record in case["backends"].items():
                if "predict_patterns_per_s" not in record:
                    table.add_row(label, name, "[red]failed[/]", escape(record["error"][:70]), "", "", "", "")
                    continue
                table.add_row(label, name, _rate(record["predict_patterns_per_s"]),
                              _rate(record["reconstruct_patterns_per_s"]), f"{record['build_model_s']:.2f}",
                              "-" if record["predict_gflops"] is None else f"{record['predict_gflops']:.1f}",
                              f"{record['peak_rss_mib']:,.0f}",
                              f"{record['setup_rss_mib']:,.0f}")
        console.print(table)
        table = Table(title="ONNX Runtime / fastest framework backend (medians; goal >= 1)")
        for column in ("case", "predict", "reconstruct"):
            table.add_column(column, justify="left" if column == "case" else "right")
        for key, case in results["cases"].items():
            comparison = case["onnx_vs_fastest_framework"]
            if "skipped" in comparison:
                table.add_row(key, comparison["skipped"], "")
                continue
            cells = [f"{comparison[name]['ratio']:.2f} vs {comparison[name]['fastest_framework_backend']}"
                     + ("" if comparison[name]["meets_goal"] else " [red](below)[/]") for name in MEASURES.values()]
            table.add_row(key, *cells)
        console.print(table)
        peers = {key: case["vs_published"] for key, case in results["cases"].items() if "vs_published" in case}
        if peers:
            table = Table(title="Ours / the published PtychoPINN (medians; goal: reconstruct >= 2)")
            for column in ("case", "backend", "predict", "reconstruct"):
                table.add_column(column, justify="left" if column in ("case", "backend") else "right")
            for key, comparison in peers.items():
                if "skipped" in comparison:
                    table.add_row(key, comparison["skipped"], "", "")
                    continue
                for name, ratios in comparison.items():
                    if name == "goal":
                        continue
                    table.add_row(key, name, f"{ratios['predict']:.2f}", f"{ratios['reconstruct']:.2f}"
                                  + ("" if ratios["meets_goal"] else " [red](below)[/]"))
            console.print(table)
    sizes = results.get("env_sizes")
    if sizes is None:
        return
    if "error" in sizes:
        console.print(f"[red]environment sizes failed:[/] {escape(sizes['error'])}")
        return
    added = sizes["comparison"].get("added_over_core_mib", {})
    table = Table(title="Fresh environments (MiB, apparent sizes)")
    for column in ("install", "venv", "site-packages", "added over core", "distributions", "largest"):
        table.add_column(column, justify="left" if column in ("install", "largest") else "right")
    for name, record in sizes["environments"].items():
        label = escape(" ".join(record["requirements"]))
        if "error" in record:
            table.add_row(label, "[red]failed[/]", escape(record["error"][:70]), "", "", "")
            continue
        largest = ", ".join(f"{dist['name']} {dist['mib']:,.0f}" for dist in record["largest"])
        extra = f"{added[name]['venv']:,.0f}" if name in added else "-"
        table.add_row(label, f"{record['venv_mib']:,.0f}", f"{record['site_packages_mib']:,.0f}", extra,
                      str(record["distributions"]), largest)
    console.print(table)
    comparison = sizes["comparison"]
    if "onnx_over_torch" in comparison:
        ratio = comparison["onnx_over_torch"]
        frameworks = sizes["environments"]["onnx"].get("frameworks", {})
        console.print(escape(f"[onnx] / [torch]: venv {ratio['venv']:.3f}, site-packages {ratio['site_packages']:.3f}, "
                      f"added over the core {ratio.get('added_over_core', float('nan')):.3f} (goal <= 0.1); "
                      f"[onnx] imports {frameworks.get('imported_after_a_prediction') or 'no framework'}, "
                      f"has installed {frameworks.get('installed') or 'neither'}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated backend names (default: every installed one)")
    parser.add_argument("--pattern-sizes", default="64,128", help="comma-separated N (default 64,128)")
    parser.add_argument("--gridsizes", default="1,2", help="comma-separated gridsizes (default 1,2)")
    parser.add_argument("--positions", help="scan positions: one count for every N, or N=COUNT,... "
                                            "(default: 512 at N = 64, 128 at N = 128)")
    parser.add_argument("--n-filters-scale", type=int, default=1, help="model width (default 1)")
    parser.add_argument("--architecture", default="encoder_decoder", choices=ARCHITECTURES,
                        help="model.architecture of the bundles (default encoder_decoder)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds, a fresh subprocess each (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="in each subprocess, keep repeating each measured call for this long (default 2)")
    parser.add_argument("--calls", type=int, default=2, help="least timed calls of each measure per subprocess (default 2)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="weights, scan and grouping")
    parser.add_argument("--env-sizes", action="store_true",
                        help="also measure fresh environments with each backend (minutes, needs the package index)")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference measurements")
    parser.add_argument("--published", type=Path, metavar="DIR",
                        help="also time the published PtychoPINN on the same scans (N = 64): DIR holds its "
                             "environment venv-tf/, its source PtychoPINN/ and models/g1/, models/g2/ "
                             "(bench/published_peer.py; docs/benchmarks.md, 'PyTorch speed')")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.calls < 1:
        parser.error("--repeats and --calls must be at least 1")
    if args.published is not None:
        args.published = args.published.resolve()
        if not (args.published / "venv-tf" / "bin" / "python").exists():
            parser.error(f"--published {args.published}: no venv-tf/bin/python there")

    registry = BackendRegistry.discover()
    try:
        names = [registry.get(name.strip()).name for name in args.backends.split(",")] if args.backends \
            else registry.names()
        sizes, gridsizes = _ints(args.pattern_sizes), _ints(args.gridsizes)
        parse_positions(args.positions, sizes)
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    if not args.no_inference and not (names and sizes and gridsizes):
        parser.error("no backend or no case to measure")
    progress = Console(stderr=True)
    started = time.perf_counter()

    def report(message: str) -> None:
        progress.print(f"[dim]{time.perf_counter() - started:6.1f} s[/] {message}")

    settings = {key: getattr(args, key) for key in ("n_filters_scale", "repeats", "seconds", "calls", "device", "seed")}
    settings["published"] = None if args.published is None else str(args.published)
    settings.update({"backends": names, "pattern_sizes": sizes, "gridsizes": gridsizes,
                     "positions": {str(size): count for size, count in parse_positions(args.positions, sizes).items()},
                     # Thread settings the subprocesses inherit (the ``ptychopinn`` command sets
                     # OMP_WAIT_POLICY=PASSIVE unless set; these measurements do not).
                     "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES}})
    results: dict[str, Any] = {"benchmark": "inference", "machine": machine_info(), "settings": settings,
                               "goals": GOALS if args.published is None else {**GOALS, "published": PEER_GOAL}}
    if not args.no_inference:
        results["cases"] = measure_inference(names, args, report)
    if args.env_sizes:
        results["env_sizes"] = environment_sizes(report)
    results["wall_s"] = time.perf_counter() - started
    report("done")

    return finish(results, args.json, print_tables, _failed(results), progress, width=140)


if __name__ == "__main__":
    sys.exit(main())
