"""PyTorch + Lightning backend of the PtychoPINN reconstructor."""

__version__ = "0.1.0"
