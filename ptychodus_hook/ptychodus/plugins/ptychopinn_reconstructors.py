"""Ptychodus plugin module: adds the PtychoPINN reconstructor libraries (one per backend)
and, when the window starts, their settings panels.

Installed by the distribution ``ptychopinn-ptychodus-hook`` into Ptychodus' namespace
package ``ptychodus.plugins``. Ptychodus 1.7 imports every module there and calls its
``register_plugins(registry)`` at the start of ``ModelCore.__init__``, before it builds
its reconstructor libraries. Ptychodus' plugin registry has no place for reconstructor
libraries, so ``registry`` is not used: the work is done by
``ptychopinn_core.ptychodus.hook.install`` (see its docstring and docs/ptychodus.md).

This module must never stop Ptychodus: any failure is logged and Ptychodus starts
without the PtychoPINN reconstructors.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def register_plugins(registry: Any) -> None:
    """Install the hook that adds the PtychoPINN libraries and panels (``registry`` is not used)."""
    try:
        from ptychopinn_core.ptychodus.hook import install

        install()
    except Exception:  # noqa: BLE001 - Ptychodus only catches ImportError and AttributeError
        logger.exception("PtychoPINN reconstructors are not available")
