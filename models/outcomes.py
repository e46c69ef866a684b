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
        name = changes.get("version", self.version)
        if changed.digest() == RuleSet().digest():
            return replace(changed, version=name)
        # Even a version the deployment names carries the digest when the thresholds are
        # not the defaults: "2026-11-1" can never label a set that is not 2026-11-1.
        return replace(changed, version=f"{name}+{changed.digest()}")

    def digest(self) -> str:
        """A short digest of the thresholds (not the version string)."""
        values = {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v
            for f in fields(self)
            if f.name != "version"
        }
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @classmethod
    def from_mapping(cls, given: Mapping[str, Any], *, base: RuleSet | None = None) -> RuleSet:
        """Rules from a deployment's settings: thresholds given replace the defaults (per
        instrument for the per-instrument rules); ValueError names what is wrong."""
        base = base or cls()
        # The self-harm grading (1 medium, 2 and above high) is clinical.md §6, not a choice.
        known = {f.name for f in fields(cls)} - {"self_harm_high_from"}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"unknown rule settings: {unknown}")
        changes: dict[str, Any] = {}
        for name, value in given.items():
            if name == "version":
                if not isinstance(value, str) or not 1 <= len(value) <= 64:
                    raise ValueError("version must be text of 1 to 64 characters")
            elif name == "remission":
                value = {**base.remission, **_remission_rules(value)}
            elif name in _PER_INSTRUMENT:
                value = {**getattr(base, name), **_points(name, value)}
            elif name == "response_fraction":
                if not _number(value) or not 0 < value < 1:
                    raise ValueError("response_fraction must be a number between 0 and 1")
            elif not _whole(value) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1")
            changes[name] = MappingProxyType(value) if isinstance(value, dict) else value
        return base.with_overrides(**changes)

    def describe(self) -> dict[str, Any]:
        """The active definitions, for people and clients to read."""
        return {
            "version": self.version,
            "response": {"current_at_most_fraction_of_baseline": self.response_fraction},
            "remission": {
                code: {"operator": op, "cutoff": cut} for code, (op, cut) in self.remission.items()
            },
            "reliable_improvement": {
                code: {"drop_at_least": drop}
                for code, drop in self.reliable_improvement_drop.items()
            },
            "minimal_important_change": {
                code: {"improvement_at_least": points}
                for code, points in self.minimal_important_change.items()
            },
            "relapse": {
                code: {"at_least": cut, "after": "remission"}
                for code, cut in self.relapse_min.items()
            },
            "alerts": {
                "worsening_points": self.worsening_points,
                "post_session_drop_points": self.post_session_drop_points,
                "post_session_window_hours": self.post_session_window_hours,
                "self_harm_high_from": self.self_harm_high_from,
            },
        }

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

    def is_minimal_important_improvement(self, code: str, improvement: float | None) -> bool | None:
        """An improvement of at least the instrument's minimal important change."""
        points = self.minimal_important_change.get(code)
        if points is None or improvement is None:
            return None
        return improvement >= points


# Instruments whose totals the per-instrument rules may name, with their maximum total.
INSTRUMENT_MAXIMA = {"phq9": 27, "gad7": 21, "qids_sr16": 27, "madrs": 60, "cadss": 92}
_PER_INSTRUMENT = ("reliable_improvement_drop", "minimal_important_change", "relapse_min")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _instrument(name: str, code: Any) -> str:
    if code not in INSTRUMENT_MAXIMA:
        raise ValueError(f"{name}: {code!r} is not an instrument with a total")
    return code


def _remission_rules(value: Any) -> dict[str, tuple[str, float]]:
    if not isinstance(value, Mapping):
        raise ValueError('remission must map instruments to ["<" or "<=", cut-off]')
    out = {}
    for code, rule in value.items():
        _instrument("remission", code)
        if (
            not isinstance(rule, list | tuple)
            or len(rule) != 2
            or rule[0] not in ("<", "<=")
            or not _number(rule[1])
            or not 0 <= rule[1] <= INSTRUMENT_MAXIMA[code]
        ):
            raise ValueError(f'remission of {code} must be ["<" or "<=", a total in range]')
        out[code] = (rule[0], rule[1])
    return out


def _points(name: str, value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map instruments to whole numbers of points")
    out = {}
    for code, points in value.items():
        _instrument(name, code)
        if not _whole(points) or not 1 <= points <= INSTRUMENT_MAXIMA[code]:
            raise ValueError(f"{name} of {code} must be a whole number of points in range")
        out[code] = points
    return out
