"""Which runs are recorded (``[history]``), decided in a few hundred nanoseconds per run.

A run must be collected before its outcome is known, since a failed run is kept in every mode
but ``off``; whether it is kept is decided when it ends (:meth:`HistoryPolicy.keeps`). Runs of
one journey are sampled together, so a form wizard is recorded whole or not at all.
"""

from __future__ import annotations

__all__ = ["HistoryMode", "HistoryPolicy"]

import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nflow.config import HistoryConfig

HistoryMode = Literal["off", "errors", "sampled", "all"]
_MODES = ("off", "errors", "sampled", "all")
_SCALE = float(1 << 32)
_crc32 = zlib.crc32


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    mode: HistoryMode = "sampled"
    sample_rate: float = 0.01
    retention_days: float = 7.0
    max_runs: int = 100_000  # 0: no limit but retention_days
    max_value_bytes: int = 65_536
    redact: bool = True
    redact_keys: tuple[str, ...] = ()
    # app name → (mode or None, sample rate or None): None falls back to the global value
    apps: Mapping[str, tuple[HistoryMode | None, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (mode, rate) in {"": (self.mode, self.sample_rate), **self.apps}.items():
            where = f"history.apps.{name}" if name else "history"
            if mode is not None and mode not in _MODES:
                raise ValueError(f"{where}.mode: expected one of {', '.join(_MODES)}, got {mode!r}")
            if rate is not None and not 0.0 <= rate <= 1.0:
                raise ValueError(f"{where}.sample_rate: expected 0 to 1, got {rate}")
        if self.max_value_bytes < 256:
            raise ValueError("history.max_value_bytes: must be at least 256")

    @classmethod
    def from_config(cls, config: HistoryConfig) -> HistoryPolicy:
        return cls(
            mode=config.mode,
            sample_rate=config.sample_rate,
            retention_days=config.retention_days,
            max_runs=config.max_runs,
            max_value_bytes=config.max_value_bytes,
            redact=config.redact,
            redact_keys=tuple(config.redact_keys),
            apps={name: (app.mode, app.sample_rate) for name, app in config.apps.items()},
        )

    def mode_of(self, app: str) -> HistoryMode:
        override = self.apps.get(app)
        if override is not None and override[0] is not None:
            return override[0]
        return self.mode

    def rate_of(self, app: str) -> float:
        override = self.apps.get(app)
        if override is not None and override[1] is not None:
            return override[1]
        return self.sample_rate

    def sampling(self, app: str, key: str) -> bool | None:
        """For a run starting: ``None`` when ``app``'s runs are not collected, else whether
        this one is recorded in full (see :meth:`in_full`). One call on the request path."""
        mode, rate = self.mode, self.sample_rate
        if self.apps:
            override = self.apps.get(app)
            if override is not None:
                if override[0] is not None:
                    mode = override[0]
                if override[1] is not None:
                    rate = override[1]
        if mode != "sampled":
            return None if mode == "off" else True
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        # _draw(key) < rate, inlined (this runs for every request); scaling by a power of
        # two is exact, so it decides as _draw does.
        try:
            raw = key.encode()
        except UnicodeEncodeError:
            raw = key.encode("utf-8", "surrogatepass")
        return _crc32(raw) < rate * _SCALE

    def collects(self, app: str) -> bool:
        """Whether a run of ``app`` should be collected at all (it may still be let go)."""
        return self.mode_of(app) != "off"

    def in_full(self, app: str, key: str) -> bool:
        """Whether a run of ``app`` with sampling key ``key`` (its journey, else its own id) is
        recorded in full: in ``all`` and ``errors`` every run, in ``sampled`` the runs drawn
        for the sample. Known when the run starts; the others are recorded as well, in case they
        fail, and let go when they succeed (see the engine)."""
        mode = self.mode_of(app)
        if mode != "sampled":
            return mode != "off"
        rate = self.rate_of(app)
        return rate >= 1.0 or (rate > 0.0 and _draw(key) < rate)

    def keeps(self, app: str, *, failed: bool, journey: str | None = None) -> bool:
        """Whether a finished run is written: every failed run unless ``off``; in ``sampled``
        mode ``sample_rate`` of the others, by journey when there is one."""
        mode = self.mode_of(app)
        if mode == "all":
            return True
        if mode == "off":
            return False
        if failed:
            return True
        if mode == "errors":
            return False
        rate = self.rate_of(app)
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        if journey:
            return _draw(journey) < rate
        return random.random() < rate


def _draw(key: str) -> float:
    """A number in [0, 1) that is the same for the same key (a journey, a run id)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) / _SCALE
