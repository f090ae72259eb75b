"""A backend's framework is imported before its first hook, with native start-up INFO filtered."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from ptychopinn_core.backends.framework import _kept, framework_modules

INFO = "I0000 00:00:1796522571.878128    6494 port.cc:153] oneDNN custom operations are on.\n"
WARNING = "W0000 00:00:1796522571.878128    6494 util.cc:163] Not handling type DT_DOUBLE\n"
ERROR = "E1206 02:03:04.123456    6494 cuda.cc:10] no CUDA device\n"
PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"


def test_only_native_lines_below_the_level_are_dropped() -> None:
    assert not _kept(INFO, 1) and not _kept(INFO, 2)
    assert _kept(WARNING, 1) and not _kept(WARNING, 2)
    assert _kept(ERROR, 2) and _kept(ERROR, 0)
    assert _kept(PRE_INIT, 1) and not _kept(PRE_INIT, 2)
    for line in ("Traceback (most recent call last):\n", "I love this line\n", "UserWarning: I0000 is odd\n"):
        assert _kept(line, 3)


def test_framework_modules_come_from_the_distributions() -> None:
    assert framework_modules(["no-such-distribution"]) == []
    if importlib.util.find_spec("torch") is not None:
        assert framework_modules(["torch"]) == ["torch"]  # not also torchgen, functorch


FILTER_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from ptychopinn_core.backends.framework import native_log_filtered
    with native_log_filtered():
        os.write(2, {lines!r}.encode())
        print("python line", file=sys.stderr)
    """
)


@pytest.mark.parametrize("level, expected", [
    ("2", "ERR\npython line\n"),
    ("0", "{all}python line\n"),
    (None, "{all}python line\n"),
])
def test_descriptor_2_is_filtered_by_the_users_level(level, expected) -> None:
    lines = PRE_INIT + INFO + WARNING + "ERR\n"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL")}
    if level is not None:
        environment["TF_CPP_MIN_LOG_LEVEL"] = level
    result = subprocess.run([sys.executable, "-c", FILTER_SCRIPT.format(lines=lines)], capture_output=True,
                            text=True, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == expected.format(all=lines)


TENSORFLOW_SCRIPT = textwrap.dedent(
    """
    from ptychopinn_core.backends import BackendRegistry
    BackendRegistry.discover().get("tensorflow").devices()
    """
)


@pytest.mark.skipif(importlib.util.find_spec("ptychopinn_tf") is None, reason="the tensorflow backend is not installed")
def test_tensorflow_start_up_lines_are_gone_at_the_clis_level() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    raw = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                         env=environment, timeout=120)
    if "oneDNN" not in raw.stderr:
        pytest.skip("this TensorFlow prints no oneDNN start-up line: nothing to filter")
    quiet = subprocess.run([sys.executable, "-c", TENSORFLOW_SCRIPT], capture_output=True, text=True,
                           env=dict(environment, TF_CPP_MIN_LOG_LEVEL="2"), timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "oneDNN" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr, quiet.stderr
