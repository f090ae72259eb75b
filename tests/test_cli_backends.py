"""``ptychopinn backends``: listing, JSON, devices, --check and the no-backend case."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ptychopinn_core.backends import KNOWN_BACKENDS
from ptychopinn_core.cli import main as cli_main

EMPTY_GROUP = "ptychopinn.tests.no-backends-here"


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``ptychopinn ARGS`` in a fresh interpreter (the console script's entry point)."""
    return subprocess.run([sys.executable, "-m", "ptychopinn_core.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_backends_command_is_registered():
    assert cli_main._COMMANDS["backends"] == "ptychopinn_core.cli.backends:backends_command"


@pytest.fixture
def cli(capsys):
    """Run ``ptychopinn ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_main.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# -- no backend installed (subprocess: the real command line) ------------------------------


def test_no_backend_installed_says_how_to_install_one_and_fails():
    result = run_cli(["backends", "--entry-point-group", EMPTY_GROUP])
    assert result.returncode == 1
    assert "no PtychoPINN backend is installed; install one with:" in result.stderr
    for command in KNOWN_BACKENDS.values():
        assert command in result.stderr


def test_selecting_pytorch_when_not_installed_prints_the_install_command():
    result = run_cli(["backends", "--check", "pytorch", "--entry-point-group", EMPTY_GROUP])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: backend 'pytorch' is not installed; install it with: pip install \"ptychopinn-core[torch]\""
    )


def test_fake_backend_listed_as_json_in_a_fresh_interpreter(fake_backend_env):
    result = run_cli(["backends", "--json"], env=fake_backend_env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    entries = {entry["name"]: entry for entry in payload["backends"]}
    assert entries["numpyfake"]["status"] == "ok"
    assert entries["numpyfake"]["info"]["capabilities"]["pattern_sizes"] == [16, 32, 64]
    assert entries["brokenfake"]["status"] == "broken"
    assert "simulated import failure" in entries["brokenfake"]["reason"]
    assert "numpyfake" in payload["usable"] and payload["install"] == dict(KNOWN_BACKENDS)


# -- in-process ----------------------------------------------------------------------------


def test_table_lists_status_framework_and_reasons(cli, fake_backend):
    code, out, _ = cli("backends")
    assert code == 0
    assert "numpyfake" in out and "ptychopinn-fake 0.1.0" in out and "modes: pinn" in out
    assert "brokenfake is broken: importing ptychopinn_fake.broken failed" in out


def test_table_names_the_known_backends_that_are_missing(cli, fake_backend, monkeypatch):
    # Only the fake's distribution in the group: tensorflow and pytorch are missing.
    from ptychopinn_core.backends import registry as registry_module

    real = registry_module.importlib.metadata.entry_points
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points",
                        lambda group: [ep for ep in real(group=group) if ep.dist.metadata["Name"] == "ptychopinn-fake"])
    code, out, _ = cli("backends")
    assert code == 0
    assert 'not installed: pytorch (pip install "ptychopinn-core[torch]")' in out
    assert 'not installed: tensorflow (pip install "ptychopinn-core[tf]")' in out


def test_json_with_no_backend_is_empty_and_fails(cli):
    code, out, _ = cli("backends", "--json", "--entry-point-group", EMPTY_GROUP)
    assert code == 1
    assert json.loads(out)["backends"] == []


def test_devices_are_listed_on_request(cli, fake_backend):
    code, out, _ = cli("backends", "--json", "--devices")
    assert code == 0
    entries = {entry["name"]: entry for entry in json.loads(out)["backends"]}
    assert entries["numpyfake"]["devices"] == ["cpu"]
    assert entries["brokenfake"]["devices"] == "unavailable"


@pytest.mark.parametrize("name", ["numpyfake", "NUMPYFAKE"])
def test_check_selects_a_working_backend(cli, fake_backend, name):
    code, out, _ = cli("backends", "--check", name, "--devices")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("numpyfake: ok (ptychopinn-fake 0.1.0, numpy ")
    assert lines[1:] == ["devices: cpu"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("brokenfake", "error: backend 'brokenfake' (ptychopinn-fake 0.1.0) is broken: importing ptychopinn_fake"),
        ("jax", "error: unknown backend: expected one of the installed backends ("),
    ],
)
def test_check_fails_with_one_error_line(cli, fake_backend, name, message):
    code, _, err = cli("backends", "--check", name)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith(message)


def test_check_resolves_aliases(cli):
    code, _, err = cli("backends", "--check", "TF", "--entry-point-group", EMPTY_GROUP)
    assert code == 1
    expected = "error: backend 'tensorflow' is not installed; install it with: pip install \"ptychopinn-core[tf]\""
    assert err.strip() == expected


def test_help_has_examples(cli):
    code, out, _ = cli("backends", "--help")
    assert code == 0
    assert "Examples:" in out and "ptychopinn backends --check torch" in out
    assert "--entry-point-group" not in out
