"""What the machine can hold and do: available memory (for buffers sized before they are
allocated), and whether its CPU multiplies bfloat16 matrices in hardware."""

from __future__ import annotations

import os
from pathlib import Path

from rl_sever.errors import ConfigError

GiB = 1024**3


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, capped by a cgroup
    (container) limit; None where neither can be read (not Linux)."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap, used = Path(limit).read_text().strip(), Path(usage).read_text().strip()
        except OSError:
            continue
        if cap.isdigit() and int(cap) < 2**60:  # "max" or a huge number: no limit
            found.append(max(int(cap) - int(used), 0))
        break
    return min(found) if found else None


def check_fits(nbytes: int, what: str, setting: str, per_unit: int) -> None:
    """ConfigError when `nbytes` for `what` exceed the available memory, naming the figure and
    the `setting` (counted in units of `per_unit` bytes) that would fit."""
    free = available_memory()
    if free is None or nbytes <= free:
        return
    fits = int(0.8 * free // max(per_unit, 1))
    raise ConfigError(f"{what} needs {nbytes / GiB:.1f} GiB, but only {free / GiB:.1f} GiB of "
                      f"memory are available: lower {setting} (e.g. {setting}={fits:,} would "
                      "use 80% of it)")


CPUINFO = Path("/proc/cpuinfo")


def cpu_info(cpuinfo: Path | None = None) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where it cannot be read: not
    Linux)."""
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read: not Linux)."""
    return frozenset(cpu_info(cpuinfo).get("flags", "").split())


def has_bf16_matrix_units() -> bool:
    """True on CPUs with AMX bfloat16 tiles, where TensorFlow's oneDNN matmuls run bfloat16
    products about twice as fast as float32 (bench/README.md)."""
    return "amx_bf16" in cpu_flags()


def bf16_matmuls_pay(cpuinfo: Path | None = None) -> bool:
    """True on the CPUs where bfloat16 hidden matmuls were measured faster than float32 for the
    off-policy MLP updates (docs/performance.md): AMX bfloat16 tiles, and AMD's family 25 with
    AVX512_BF16 (Zen 4), whose AVX-512 float32 FMAs run on 256-bit units while its bfloat16
    dot products do twice the products per instruction. Elsewhere float32: Intel's AVX512_BF16
    without AMX was measured slower (emulated), other CPUs were not measured. Never with
    oneDNN off (TF_ENABLE_ONEDNN_OPTS=0), where bfloat16 products were slower than float32."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false"):
        return False
    info = cpu_info(cpuinfo)
    flags = frozenset(info.get("flags", "").split())
    if "amx_bf16" in flags:
        return True
    zen4 = info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25"
    return zen4 and "avx512_bf16" in flags
