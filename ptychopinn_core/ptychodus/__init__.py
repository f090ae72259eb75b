"""PtychoPINN reconstructors inside the Ptychodus application (release 1.7).

Every installed PtychoPINN backend (TensorFlow, PyTorch, ...) becomes one Ptychodus
``ReconstructorLibrary`` named ``PINN-<Backend>`` offering the trainable reconstructors
``PINN`` and ``Supervised`` (those its capabilities list). See ``docs/ptychodus.md``.

Modules
-------
convert
    Our results as Ptychodus objects (the output ``Product``, losses) and a canonical
    scan as Ptychodus input. The way in (counts, metres, ``Product`` to the canonical
    scan) is the data layer's, :mod:`ptychopinn_core.data.importers.ptychodus_product`.
settings
    The settings group each library registers in Ptychodus' ``SettingsRegistry``.
reconstructor
    ``PINNReconstructor``, the ``TrainableReconstructor`` of one backend and mode.
library
    ``PINNReconstructorLibrary`` and ``build_libraries`` (one library per backend).
panels
    The settings panel of each library in Ptychodus' Processing page (GUI only: the one
    module that imports PyQt5, loaded only when the window starts).
hook
    ``install()``: adds the libraries to Ptychodus' ProcessingCore, and their panels to
    its ProcessingController when the GUI starts. Called by the plugin module
    ``ptychodus/plugins/ptychopinn_reconstructors.py`` (distribution
    ``ptychopinn-ptychodus-hook``) and by the launcher.
launcher
    ``ptychopinn-ptychodus``: install the hook, then run Ptychodus' own ``main``.

Ptychodus is an optional dependency (``pip install "ptychopinn-core[ptychodus]"``): importing
``ptychopinn_core`` never imports it, and this package's ``__init__`` imports nothing.
The submodules import ``ptychodus.api`` (and ``hook``/``launcher`` ``ptychodus.model``
inside their functions; ``panels`` PyQt5 and ``ptychodus.controller``); none imports a
framework.
"""

__all__: list[str] = []
