"""Helpers shared by the benchmark scripts: device choice, machine description, small statistics."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Any

import torch


def pick_device(name: str | None) -> torch.device:
    """``name`` if given, else ``cuda`` when available, else ``cpu``."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given (``None`` keeps torch's default)."""
    if threads is not None:
        torch.set_num_threads(int(threads))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the timings depend on: CPU, threads, device, load, library versions."""
    from beir_peft.versions import library_versions

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_at_start": _load_average(),
        "argv": sys.argv,
        "library_versions": library_versions(),
    }
    return info


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def reset_peak_rss() -> bool:
    """Reset this process' peak resident memory to its current value (Linux ``clear_refs`` 5).

    Returns ``False`` where that is not possible (then :func:`peak_rss_since_reset_mb` reports the
    peak since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _proc_status_mb(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in MiB; ``None`` off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_since_reset_mb() -> float:
    """Peak resident memory (MiB) since :func:`reset_peak_rss` (``VmHWM``), else :func:`peak_rss_mb`."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else peak_rss_mb()


def current_rss_mb() -> float | None:
    """Resident memory now (MiB), where ``/proc`` has it."""
    return _proc_status_mb("VmRSS")


def cuda_peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / (1024 * 1024), 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[Any, float]:
    """``(fn(), seconds)``, with the device synchronised before and after."""
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - started


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def interleaved_order(names: list[str], round_index: int) -> list[str]:
    """ABC, CBA, ABC, ...: every variant sits early and late equally often, which cancels slow drift."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))
