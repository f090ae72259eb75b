"""Opening foreign NPZ archives, plain or bz2-compressed, without ever unpickling."""

from __future__ import annotations

import bz2
import contextlib
import io
import os
import zipfile
from collections.abc import Iterator

import numpy as np

from ptychopinn_core.data.errors import DataContractError

__all__ = ["BZ2_SIGNATURE", "HDF5_SIGNATURE", "ZIP_SIGNATURE", "file_signature", "load_array", "open_npz"]

BZ2_SIGNATURE = b"BZh"
ZIP_SIGNATURE = b"PK"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def file_signature(path: str | os.PathLike[str]) -> bytes:
    """The first 8 bytes of a file (``FileNotFoundError`` when it does not exist)."""
    with open(path, "rb") as handle:
        return handle.read(8)


@contextlib.contextmanager
def open_npz(path: str | os.PathLike[str]) -> Iterator[np.lib.npyio.NpzFile]:
    """Open an NPZ archive, decompressing a bz2 file in memory first.

    ``np.load(..., allow_pickle=False)``: an object array in the archive is refused
    when it is read (:func:`load_array`), and nothing from the file is executed.
    """
    file = os.fspath(path)
    head = file_signature(file)
    if not head:
        raise DataContractError("file is empty (0 bytes), expected an NPZ archive", file=file)
    source: str | io.BytesIO = file
    if head.startswith(BZ2_SIGNATURE):
        try:
            with bz2.open(file, "rb") as handle:
                source = io.BytesIO(handle.read())
        except (OSError, EOFError, ValueError) as error:
            raise DataContractError(f"corrupt or truncated bz2 file ({error})", file=file) from None
    try:
        archive = np.load(source, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise DataContractError(f"not a readable NPZ archive ({error})", file=file) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataContractError("is a single .npy array, not an NPZ archive of named arrays",
                                file=file)
    with archive:
        yield archive


def load_array(archive: np.lib.npyio.NpzFile, key: str, file: str) -> np.ndarray:
    """One member of the archive; a missing key or a pickled array is an error naming it."""
    if key not in archive.files:
        present = ", ".join(sorted(archive.files)) or "none"
        raise DataContractError(f"required key missing; keys present: {present}", key=key,
                                file=file)
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataContractError(
                "holds a Python object array (pickle); refused without unpickling", key=key,
                file=file,
            ) from None
        raise DataContractError(f"unreadable array ({error})", key=key, file=file) from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataContractError(f"unreadable archive member ({error})", key=key,
                                file=file) from None
