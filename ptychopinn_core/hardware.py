"""What the CPU offers that decides a training precision: bfloat16 matrix units.

TensorFlow and PyTorch both run their CPU convolutions through oneDNN, which uses a
CPU's bfloat16 units (Intel AMX tiles, AVX-512 BF16 dot products) when the network
runs in bfloat16. With them ``execution.precision = "bf16-mixed"`` trains this
project's network 2.7-3.3x faster at the same quality per epoch (docs/benchmarks.md);
without them bfloat16 is emulated and slower than float32. Framework-free: Linux
reports the units as CPU flags.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BFLOAT16_FLAGS", "cpu_bfloat16_flags"]

#: CPU flags of bfloat16 matrix (AMX) and dot-product (AVX-512 BF16) units, as Linux names them.
BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
_CPUINFO = Path("/proc/cpuinfo")


def cpu_bfloat16_flags(cpuinfo: str | Path = _CPUINFO) -> tuple[str, ...]:
    """The flags of :data:`BFLOAT16_FLAGS` the CPU reports, in that order.

    Empty where the CPU has none, and where the system does not say (no ``/proc/cpuinfo``:
    not Linux), so that the caller keeps float32.
    """
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":  # x86; Arm lists "Features", none of them oneDNN's x86 units
            flags.update(value.split())
    return tuple(flag for flag in BFLOAT16_FLAGS if flag in flags)
