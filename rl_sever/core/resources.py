"""What the machine can hold and do: available memory (for buffers sized before they are
allocated), and whether its CPU multiplies bfloat16 matrices in hardware."""

from __future__ import annotations

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


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read: not Linux)."""
    try:
        for line in Path(cpuinfo or CPUINFO).read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def has_bf16_matrix_units() -> bool:
    """True on CPUs with AMX bfloat16 tiles, where TensorFlow's oneDNN matmuls run bfloat16
    products about twice as fast as float32 (bench/README.md); elsewhere bfloat16 is slower."""
    return "amx_bf16" in cpu_flags()
