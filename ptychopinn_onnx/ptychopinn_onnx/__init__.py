"""ONNX Runtime backend of the PtychoPINN reconstructor: runs trained models, no framework.

The network and the physics it needs at inference are written as one ONNX graph
directly from the core's canonical description (:mod:`ptychopinn_onnx.graph`,
:mod:`ptychopinn_onnx.export`), so exporting a model needs neither TensorFlow nor torch,
and the exported file runs in any ONNX runtime.
"""

__version__ = "0.1.0"
