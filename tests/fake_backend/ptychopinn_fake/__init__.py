"""A numpy-only PtychoPINN backend for the test suite (see tests/fake_backend/README.md)."""

__version__ = "0.1.0"
