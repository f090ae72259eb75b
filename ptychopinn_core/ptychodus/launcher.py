"""``ptychopinn-ptychodus``: Ptychodus with the PtychoPINN reconstructors, for any install.

The plugin module that adds our libraries to the plain ``ptychodus`` command must sit
inside Ptychodus' installed ``ptychodus/plugins`` folder, which only a non-editable
install of ``ptychopinn-ptychodus-hook`` achieves (see ``docs/ptychodus.md``). This
launcher does not depend on that: it installs the same hook
(:func:`ptychopinn_core.ptychodus.hook.install`) in its own process, then runs
Ptychodus' own ``main`` with the same arguments::

    ptychopinn-ptychodus                                   # the GUI
    ptychopinn-ptychodus -b reconstruct -i IN -o OUT       # batch mode

With the hook distribution installed as well, the second installation is a no-op.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    """Install the hook, then return Ptychodus' ``main()`` exit code."""
    from ptychopinn_core.ptychodus.hook import install

    install()
    from ptychodus.__main__ import main as ptychodus_main

    return int(ptychodus_main())


if __name__ == "__main__":
    sys.exit(main())
