"""Importing a backend's framework: once, before its first hook, with native start-up INFO filtered.

TensorFlow's C++ libraries log through absl before absl is initialised, so
``TF_CPP_MIN_LOG_LEVEL`` cannot reach the lines they print at import (the oneDNN notice,
twice, and absl's "All log messages before absl::InitializeLog()" warning). They go to
file descriptor 2, under any Python-level redirection. The framework is therefore
imported while descriptor 2 is a temporary file; afterwards every captured line is
written back to stderr except the native log lines below the minimum level the user
set (``TF_CPP_MIN_LOG_LEVEL`` or ``ABSL_MIN_LOG_LEVEL``: 0 INFO, 1 WARNING, 2 ERROR).
With neither set, nothing is filtered. Which modules to import comes from the backend's
``framework_distributions``: no framework is named here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator

__all__ = ["framework_modules", "import_framework", "native_log_filtered"]

#: An absl/glog line: severity letter, MMDD, time (raw seconds before absl starts), thread, file:line].
_NATIVE_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] ")
#: absl's notice that it logs to stderr before initialisation: a WARNING.
_ABSL_PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def framework_modules(distributions: Iterable[str]) -> list[str]:
    """The import names of the installed ``distributions``, sorted.

    A distribution's module of its own name when it has one (``torch``, not also its
    ``torchgen``), else all its top-level modules (``tensorflow-cpu`` -> ``tensorflow``).
    """
    provided: dict[str, list[str]] = {}
    for module, providers in importlib.metadata.packages_distributions().items():
        if module.isidentifier():
            for provider in providers:
                provided.setdefault(_normalised(provider), []).append(module)
    modules = set()
    for distribution in map(_normalised, distributions):
        candidates = provided.get(distribution, [])
        own = distribution.replace("-", "_")
        modules.update([own] if own in candidates else candidates)
    return sorted(modules)


def _minimum_level() -> int | None:
    levels = []
    for variable in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit():
            levels.append(int(value))
    return max(levels) if levels else None


def _kept(line: str, minimum: int) -> bool:
    if line.rstrip("\n") == _ABSL_PRE_INIT:
        return minimum <= _SEVERITY["W"]
    match = _NATIVE_LINE.match(line)
    return match is None or _SEVERITY[match["severity"]] >= minimum


@contextlib.contextmanager
def native_log_filtered() -> Iterator[None]:
    """Capture descriptor 2 for the block; write back all but the native lines below the level."""
    minimum = _minimum_level()
    if minimum is None or minimum <= 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if _kept(line, minimum))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_framework(distributions: Iterable[str]) -> None:
    """Import the framework's modules not yet imported, native start-up INFO filtered.

    An import that fails is left for the backend's own code to report (with its hint).
    """
    modules = [name for name in framework_modules(distributions) if name not in sys.modules]
    if not modules:
        return
    with native_log_filtered():
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
