"""Collection strategy as data (issue 16, item 3): segments of cases → treatments.

A strategy file (TOML; strategies/default.toml reproduces the released behaviour) names its
`version`, its `[treatments.NAME]` and an ordered `[[segments]]` list. The first segment
whose conditions all hold for a new case picks its treatment (the champion); a segment may
name a `challenger` treatment for `challenger_percent` of its new cases, chosen by a hash
of the loan number, so a loan always lands in the same arm. The assessment picks the
segment; the case keeps the chosen version, segment, arm and treatment for its life.

A treatment sets the case's policy (durations in days of the policy's `day_seconds`, so
a fast demo's day is a second) and whether promises and settlements are offered. Every
error names the key at fault (`segments[2].treatment: unknown treatment 'X'`).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.policy import Policy, PolicyError

DEFAULT_STRATEGY_FILE = Path(__file__).resolve().parent.parent / "strategies" / "default.toml"


class StrategyError(ValueError):
    """A strategy file that cannot be used; the message starts with the key at fault."""


# Treatment keys → the policy field they set; days are multiplied by policy.day_seconds.
DAY_KEYS = {
    "days_until_first_visit": "contact_wait_seconds",
    "visit_deadline_days": "visit_deadline_seconds",
    "reminder_lead_days": "reminder_lead_seconds",
    "revisit_interval_days": "revisit_interval_seconds",
    "max_plan_days": "max_plan_seconds",
}
INT_KEYS = {
    "sms_per_day": "sms_per_day",  # SMS cadence: at most this many a day, a week
    "sms_per_week": "sms_per_week",
    "max_installments": "max_installments",
    "min_installment_fen": "min_installment_fen",
    "max_promise_days": "max_promise_days",
    "max_broken_promises": "max_broken_promises",
}
STR_KEYS = {"promise_broken_next": "promise_broken_next"}
BOOL_KEYS = ("offer_promises", "offer_settlements")
TEXT_KEYS = ("description",)
SEGMENT_KEYS = {
    "name",
    "treatment",
    "challenger",
    "challenger_percent",
    "min_dpd",
    "max_dpd",
    "min_amount_fen",
    "max_amount_fen",
    "risk_tiers",
    "remote",
    "disaster_affected",
    "min_prior_broken_promises",
}


@dataclass(frozen=True)
class Treatment:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)  # the file's keys as given
    offer_promises: bool = True
    offer_settlements: bool = True

    def policy_overrides(self, policy: Policy) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.settings.items():
            if key in DAY_KEYS:
                out[DAY_KEYS[key]] = int(value * policy.day_seconds)
            elif key in INT_KEYS:
                out[INT_KEYS[key]] = value
            elif key in STR_KEYS:
                out[STR_KEYS[key]] = value
        return out


@dataclass(frozen=True)
class Segment:
    name: str
    treatment: str
    challenger: str = ""
    challenger_percent: int = 0
    min_dpd: int | None = None
    max_dpd: int | None = None
    min_amount_fen: int | None = None
    max_amount_fen: int | None = None
    risk_tiers: tuple[str, ...] = ()
    remote: bool | None = None
    disaster_affected: bool | None = None
    min_prior_broken_promises: int | None = None


@dataclass(frozen=True)
class SegmentFacts:
    """What a segment is chosen by: no personal data."""

    loan_no: str
    days_past_due: int
    debt_fen: int
    risk_tier: str
    remote: bool
    disaster_affected: bool
    prior_broken_promises: int


@dataclass(frozen=True)
class Choice:
    version: str
    segment: str
    arm: str  # CHAMPION or CHALLENGER
    treatment: Treatment

    @property
    def label(self) -> str:
        """The `Strategy` search attribute and database column: segment/arm, no PII."""
        return f"{self.segment}/{self.arm}"


@dataclass(frozen=True)
class Strategy:
    version: str
    treatments: dict[str, Treatment]
    segments: tuple[Segment, ...]

    def choose(self, facts: SegmentFacts) -> Choice:
        for segment in self.segments:
            if matches(segment, facts):
                arm = "CHAMPION"
                name = segment.treatment
                if segment.challenger and in_challenger(
                    facts.loan_no, segment.name, segment.challenger_percent
                ):
                    arm, name = "CHALLENGER", segment.challenger
                return Choice(self.version, segment.name, arm, self.treatments[name])
        raise StrategyError(f"segments: no segment matches loan {facts.loan_no}")


def matches(seg: Segment, f: SegmentFacts) -> bool:
    checks = (
        seg.min_dpd is None or f.days_past_due >= seg.min_dpd,
        seg.max_dpd is None or f.days_past_due <= seg.max_dpd,
        seg.min_amount_fen is None or f.debt_fen >= seg.min_amount_fen,
        seg.max_amount_fen is None or f.debt_fen <= seg.max_amount_fen,
        not seg.risk_tiers or f.risk_tier in seg.risk_tiers,
        seg.remote is None or f.remote == seg.remote,
        seg.disaster_affected is None or f.disaster_affected == seg.disaster_affected,
        seg.min_prior_broken_promises is None
        or f.prior_broken_promises >= seg.min_prior_broken_promises,
    )
    return all(checks)


def in_challenger(loan_no: str, segment: str, percent: int) -> bool:
    """Deterministic by loan number (and segment): the same loan, the same arm, on every
    worker and in every run; about `percent` % of loans."""
    digest = hashlib.sha256(f"{segment}:{loan_no}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


# ---------------------------------------------------------------- loading and validation


def _int(where: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise StrategyError(f"{where}: a whole number >= {low}, got {value!r}")
    return value


def _treatment(name: str, table: Any) -> Treatment:
    where = f"treatments.{name}"
    if not isinstance(table, dict):
        raise StrategyError(f"{where}: a table of settings")
    settings: dict[str, Any] = {}
    offers = {"offer_promises": True, "offer_settlements": True}
    for key, value in table.items():
        at = f"{where}.{key}"
        if key in DAY_KEYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise StrategyError(f"{at}: a number of days >= 0, got {value!r}")
            settings[key] = value
        elif key in INT_KEYS:
            settings[key] = _int(at, value, 1 if key == "max_installments" else 0)
        elif key in STR_KEYS:
            if value not in ("FIELD_VISIT", "NEGOTIATION"):
                raise StrategyError(f"{at}: FIELD_VISIT or NEGOTIATION, got {value!r}")
            settings[key] = value
        elif key in BOOL_KEYS:
            if not isinstance(value, bool):
                raise StrategyError(f"{at}: true or false, got {value!r}")
            offers[key] = value
        elif key in TEXT_KEYS:
            continue
        else:
            known = sorted([*DAY_KEYS, *INT_KEYS, *STR_KEYS, *BOOL_KEYS, *TEXT_KEYS])
            raise StrategyError(f"{at}: unknown key (known: {', '.join(known)})")
    return Treatment(name, settings, **offers)


def _segment(n: int, table: Any, treatments: dict[str, Treatment]) -> Segment:
    where = f"segments[{n}]"
    if not isinstance(table, dict):
        raise StrategyError(f"{where}: a table")
    for key in table:
        if key not in SEGMENT_KEYS:
            raise StrategyError(
                f"{where}.{key}: unknown key (known: {', '.join(sorted(SEGMENT_KEYS))})"
            )
    name = table.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 40:
        raise StrategyError(f"{where}.name: a name of at most 40 characters")
    values: dict[str, Any] = {"name": name}
    for key in ("treatment", "challenger"):
        value = table.get(key, "")
        if key == "treatment" or value:
            if value not in treatments:
                raise StrategyError(f"{where}.{key}: unknown treatment {value!r}")
        values[key] = value
    if "challenger_percent" in table:
        percent = _int(f"{where}.challenger_percent", table["challenger_percent"])
        if percent > 100:
            raise StrategyError(f"{where}.challenger_percent: at most 100, got {percent}")
        if percent and not values["challenger"]:
            raise StrategyError(f"{where}.challenger: name the challenger treatment")
        values["challenger_percent"] = percent
    for key in ("min_dpd", "max_dpd", "min_amount_fen", "max_amount_fen"):
        if key in table:
            values[key] = _int(f"{where}.{key}", table[key])
    if "min_prior_broken_promises" in table:
        key = "min_prior_broken_promises"
        values[key] = _int(f"{where}.{key}", table[key])
    for key in ("remote", "disaster_affected"):
        if key in table:
            if not isinstance(table[key], bool):
                raise StrategyError(f"{where}.{key}: true or false, got {table[key]!r}")
            values[key] = table[key]
    if "risk_tiers" in table:
        tiers = table["risk_tiers"]
        if not isinstance(tiers, list) or not all(t in ("LOW", "MEDIUM", "HIGH") for t in tiers):
            raise StrategyError(f"{where}.risk_tiers: a list of LOW, MEDIUM, HIGH")
        values["risk_tiers"] = tuple(tiers)
    return Segment(**values)


def parse_strategy(data: dict[str, Any]) -> Strategy:
    version = data.get("version")
    if not isinstance(version, str) or not version.strip() or len(version) > 40:
        raise StrategyError("version: a name for this strategy (at most 40 characters)")
    raw = data.get("treatments")
    if not isinstance(raw, dict) or not raw:
        raise StrategyError("treatments: at least one [treatments.NAME] table")
    treatments = {name: _treatment(name, table) for name, table in raw.items()}
    segments = data.get("segments")
    if not isinstance(segments, list) or not segments:
        raise StrategyError("segments: at least one [[segments]] table")
    parsed = tuple(_segment(n, t, treatments) for n, t in enumerate(segments))
    names = [s.name for s in parsed]
    for n, name in enumerate(names):
        if name in names[:n]:
            raise StrategyError(f"segments[{n}].name: {name!r} is used twice")
    last = parsed[-1]
    if any(
        getattr(last, k) not in (None, ())
        for k in ("min_dpd", "max_dpd", "min_amount_fen", "max_amount_fen", "risk_tiers")
    ) or any(
        getattr(last, k) is not None
        for k in ("remote", "disaster_affected", "min_prior_broken_promises")
    ):
        raise StrategyError(
            f"segments[{len(parsed) - 1}]: the last segment takes every case (no conditions)"
        )
    for t in treatments.values():  # the treatments' policy values are valid policy values
        try:
            Policy().with_overrides(t.policy_overrides(Policy()))
        except PolicyError as e:
            raise StrategyError(f"treatments.{t.name}: {e}") from None
    return Strategy(version, treatments, parsed)


def load_strategy(path: str | Path | None = None) -> Strategy:
    path = Path(path or DEFAULT_STRATEGY_FILE)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise StrategyError(f"{path.name}: not valid TOML ({e})") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8; an editor may have saved it as GBK
        raise StrategyError(
            f"{path.name}: not UTF-8 text (byte {e.start}): a strategy file must be UTF-8, "
            "save it as UTF-8 (不是 UTF-8 编码，请另存为 UTF-8)"
        ) from None
    return parse_strategy(data)
