"""The one exception type of the data contract: what failed, in which file and key."""

from __future__ import annotations

import os

__all__ = ["DataContractError", "DataContractTypeError"]


class DataContractError(ValueError):
    """A scan (file or in-memory) violates the canonical NPZ data contract.

    ``str(error)`` is always one line, ``FILE: key 'KEY': PROBLEM``, where the file and
    key parts are left out when unknown::

        scan.npz: key 'diffraction': expected (M, N, N) with equal last two axes, received shape (512, 64, 32)

    Parameters
    ----------
    problem : str
        What is wrong: the expected and the received value, and how to fix it.
    key : str, optional
        The NPZ key concerned (``None`` for problems of the whole file).
    file : str or path-like, optional
        The file concerned (``None`` for a scan that only lives in memory).
    """

    def __init__(
        self,
        problem: str,
        *,
        key: str | None = None,
        file: str | os.PathLike[str] | None = None,
    ) -> None:
        # One line, whatever the caller passed: the CLI prints exactly this.
        self.problem = " ".join(str(problem).split())
        self.key = key
        self.file = None if file is None else os.fspath(file)
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        parts.append(self.problem)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # keep the keyword-only fields when pickled (multiprocessing)
        return (_rebuild, (type(self), self.problem, self.key, self.file))

    def with_file(self, file: str | os.PathLike[str]) -> DataContractError:
        """The same error, attributed to ``file`` (used when validation ran in memory)."""
        return type(self)(self.problem, key=self.key, file=file)


class DataContractTypeError(DataContractError, TypeError):
    """A contract violation about a type or dtype (also a :class:`TypeError`)."""


def _rebuild(cls, problem, key, file):
    return cls(problem, key=key, file=file)
