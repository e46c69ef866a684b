"""The configurable clinical rules (clinical.md §3, analytics.md "Alerts") as one versioned set."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

# Bump when a default below changes; every computed label and alert stores the version.
DEFAULT_RULESET_VERSION = "2026-11-1"


def _frozen(mapping: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class RuleSet:
    """Thresholds that are clinical choices rather than published facts; defaults in code."""

    version: str = DEFAULT_RULESET_VERSION
    # worsening: a PHQ-9 total at least this far above the patient's previous PHQ-9.
    worsening_points: int = 5
    # post_session_drop: a mood this far below the session's pre mood, within the window.
    post_session_drop_points: int = 3
    post_session_window_hours: int = 48
    # self_harm priority: high from this item value, medium below (never dropped).
    self_harm_high_from: int = 2
    # response: current <= this fraction of baseline (baseline > 0).
    response_fraction: float = 0.5
    # remission (clinical.md): PHQ-9 < 5, GAD-7 < 5, QIDS-SR16 <= 5, MADRS <= 10. Kept as
    # (operator, cut-off) because "current" is a mean: 4.5 on PHQ-9 is below 5.
    remission: Mapping[str, tuple[str, float]] = field(
        default_factory=lambda: MappingProxyType(
            {"phq9": ("<", 5), "gad7": ("<", 5), "qids_sr16": ("<=", 5), "madrs": ("<=", 10)}
        )
    )
    # reliable improvement: a drop of at least these (NHS Talking Therapies convention).
    reliable_improvement_drop: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"phq9": 6, "gad7": 4})
    )
    minimal_important_change: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"phq9": 5})
    )
    # relapse (STAR*D): at or above these after remission.
    relapse_min: Mapping[str, int] = field(default_factory=lambda: _frozen({"qids_sr16": 11}))

    def with_overrides(self, **changes: Any) -> RuleSet:
        """A copy with some thresholds changed and a version that says so."""
        # The version gains a digest of the values, so a stored label never claims the
        # default rules when a deployment used others.
        if not changes:
            return self
        unknown = set(changes) - {f.name for f in fields(self)} - {"version"}
        if unknown:
            raise TypeError(f"unknown rule settings: {sorted(unknown)}")
        changed = replace(self, **{k: v for k, v in changes.items() if k != "version"})
        if "version" in changes:
            return replace(changed, version=changes["version"])
        return replace(changed, version=f"{self.version}+{changed.digest()}")

    def digest(self) -> str:
        """A short digest of the thresholds (not the version string)."""
        values = {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v
            for f in fields(self)
            if f.name != "version"
        }
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def self_harm_priority(self, item_value: int) -> str:
        """high from ``self_harm_high_from``, else medium: a positive item is never dropped."""
        return "high" if item_value >= self.self_harm_high_from else "medium"

    def is_worsening(self, previous_total: int, total: int) -> bool:
        """A rise of at least ``worsening_points``."""
        return total - previous_total >= self.worsening_points

    def is_response(self, baseline: float | None, current: float | None) -> bool | None:
        """current <= fraction x baseline; None when an input is missing or baseline <= 0."""
        if baseline is None or current is None or baseline <= 0:
            return None
        return current <= self.response_fraction * baseline

    def in_remission(self, code: str, current: float | None) -> bool | None:
        """Within the instrument's remission cut-off; None without a rule or a value."""
        rule = self.remission.get(code)
        if rule is None or current is None:
            return None
        operator, cutoff = rule
        return current < cutoff if operator == "<" else current <= cutoff

    def is_reliable_improvement(
        self, code: str, baseline: float | None, current: float | None
    ) -> bool | None:
        """A drop of at least the instrument's reliable-change threshold; None if unknown."""
        drop = self.reliable_improvement_drop.get(code)
        if drop is None or baseline is None or current is None:
            return None
        return baseline - current >= drop


DEFAULT_RULES = RuleSet()
