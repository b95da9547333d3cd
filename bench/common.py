"""What every benchmark shares: result rows, the machine it ran on, percentiles and free local ports."""

from __future__ import annotations

import math
import os
import platform
import socket
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_LAYER = ROOT / "layers" / "core"


@dataclass
class Row:
    """One line of the table: a measured figure beside the baseline measured in the same run."""

    what: str
    measured: str
    baseline: str
    figure: str
    target: str
    met: bool | None  # None: a measurement with no target


@dataclass
class Section:
    """One benchmark's rows, its method (for docs/performance.md) and its missed targets with what would close them."""

    title: str
    method: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    closing: str = ""  # what would close this section's missed targets (written only when one is missed)


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.system()} {platform.machine()}"
    )


def announce(title: str) -> None:
    """Each benchmark names its machine, so a figure copied out of the log still says where it came from."""
    print(f"\n## {title} — {machine()}", flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency that was actually observed)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"
