"""Canonical NPZ data contract: the typed scan, reading, validation and atomic writing.

See ``docs/data-contract.md`` for the keys, shapes, dtypes and conventions.
"""

from ptychopinn_core.data.errors import DataContractError, DataContractTypeError
from ptychopinn_core.data.keys import CONTRACT_VERSION
from ptychopinn_core.data.npz import read_scan, write_scan
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.data.summary import summarize_scan
from ptychopinn_core.data.validate import validate_scan

__all__ = [
    "CONTRACT_VERSION",
    "DataContractError",
    "DataContractTypeError",
    "ScanData",
    "read_scan",
    "summarize_scan",
    "validate_scan",
    "write_scan",
]
