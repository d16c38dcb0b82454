"""What a bench run measures (figures against targets, the tables behind them) and how."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Figure:
    key: str
    figure: str
    ours: float
    baseline: float
    ratio: float
    target: str
    met: bool
    unit: str
    note: str = ""


@dataclass
class Results:
    mode: str
    machine: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    growth: list[dict[str, Any]] = field(default_factory=list)  # cost vs input duration
    scaling: list[dict[str, Any]] = field(default_factory=list)  # throughput vs workers
    split: list[dict[str, Any]] = field(default_factory=list)  # split job time vs workers
    load: list[dict[str, Any]] = field(default_factory=list)  # Locust, one row per request name
    load_cpu_s: dict[str, float] = field(default_factory=dict)  # CPU by process during Locust
    load_wall_s: float = 0.0  # the Locust run's wall time, stopping included
    phases: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, fig: Figure) -> None:
        self.figures.append(fig)
        print(
            f"  {fig.figure}: ours {fig.ours:.4g} {fig.unit}, baseline {fig.baseline:.4g}, "
            f"ratio {fig.ratio:.3f} (target {fig.target}: {'met' if fig.met else 'MISSED'})",
            flush=True,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """Read a saved run; keys this version does not know are skipped."""
        known = {f.name for f in fields(cls)} - {"figures"}
        figures = [Figure(**f) for f in data.get("figures", [])]
        return cls(figures=figures, **{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Config:
    mode: str
    e2e: dict[int, int]  # input seconds -> repetitions
    audio_only_s: int | None
    clips: int
    worker_counts: tuple[int, ...]
    big_bytes: int
    mp3_s: int
    locust_users: int
    locust_seconds: int
    profile_seconds: int  # a Locust run of its own with py-spy on the API; 0: none


QUICK = Config("quick", {10: 3, 60: 2}, None, 16, (1, 2), 200_000_000, 300, 50, 20, 0)
FULL = Config("full", {10: 7, 60: 5, 600: 3}, 3600, 40, (1, 2, 4), 1_000_000_000, 1800, 50, 60, 20)
