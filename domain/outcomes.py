"""Outcomes a supervisor can read (issue 16, item 4): pure functions over a portfolio.

Delinquency buckets (M1 1-30, M2 31-60, M3 61-90, M4 91-180, M5+ over 180 days past due;
configurable), each case's bucket at every month end, roll rates between consecutive month
ends, and per branch / collector / segment / strategy arm: cure rate (cases paid in full),
recovery rate (collected / debt), promise-kept rate, days to first contact and visits per
collector-week; and whether a challenger's recovery differs from its champion's beyond noise
(a 95 % confidence interval of the difference of the mean per-case recovery).

service/outcomes.py reads the portfolio from the database; tests/test_outcomes.py checks
these on a constructed portfolio with known answers.
"""

from __future__ import annotations

import calendar
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

# (name, first day past due, last day or None): a bucket holds the days past due in range.
DEFAULT_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("M1", 1, 30),
    ("M2", 31, 60),
    ("M3", 61, 90),
    ("M4", 91, 180),
    ("M5+", 181, None),
)
CURRENT = "CURRENT"  # not past due (or paid in full: cured)
CLOSED = "CLOSED"  # closed unpaid: legal escalation, written off, cancelled
GROUPS = ("branch", "collector", "segment", "arm")


def parse_buckets(text: str) -> tuple[tuple[str, int, int | None], ...]:
    """'M1:1-30,M2:31-60,M3+:61-' → buckets; errors name the part at fault."""
    out: list[tuple[str, int, int | None]] = []
    expected = 1
    for part in text.split(","):
        name, _, span = part.strip().partition(":")
        low, _, high = span.partition("-")
        try:
            first, last = int(low), int(high) if high.strip() else None
        except ValueError:
            raise ValueError(f"buckets: {part!r} is not NAME:FIRST-LAST") from None
        if not name or first != expected or (last is not None and last < first):
            raise ValueError(f"buckets: {part!r} must start at day {expected}")
        out.append((name, first, last))
        if last is None:
            return tuple(out)
        expected = last + 1
    raise ValueError("buckets: the last bucket is open-ended (NAME:FIRST-)")


def bucket_of(dpd: int, buckets: Sequence[tuple[str, int, int | None]] = DEFAULT_BUCKETS) -> str:
    if dpd <= 0:
        return CURRENT
    for name, first, last in buckets:
        if dpd >= first and (last is None or dpd <= last):
            return name
    return buckets[-1][0]


@dataclass
class CaseOutcome:
    """One case as the reports see it; dates are the borrower's local dates."""

    loan_no: str
    branch: str
    collector: str
    segment: str
    arm: str
    overdue_since: date
    opened_on: date
    debt_fen: int  # owed when the case began (its first recorded debt, before any waiver)
    closed_on: date | None = None
    paid_in_full: bool = False
    payments: list[tuple[date, int]] = field(default_factory=list)
    promises: list[str] = field(default_factory=list)  # statuses: OPEN, KEPT, BROKEN
    first_contact_on: date | None = None
    visits: list[tuple[str, date]] = field(default_factory=list)  # (collector, date)
    waived_fen: int = 0  # waivers applied and settlements paid: reported beside recovery

    def paid_by(self, day: date) -> int:
        return sum(amount for on, amount in self.payments if on <= day)

    @property
    def paid_fen(self) -> int:
        return sum(amount for _, amount in self.payments)


def month_ends(first: date, last: date) -> list[date]:
    """Every month's last day from `first`'s month to `last`'s (the last one is `last`)."""
    out: list[date] = []
    y, m = first.year, first.month
    while True:
        end = date(y, m, calendar.monthrange(y, m)[1])
        if end >= last:
            out.append(last)
            return out
        out.append(end)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def bucket_at(c: CaseOutcome, day: date, buckets=DEFAULT_BUCKETS) -> str | None:  # type: ignore[no-untyped-def]
    """The case's bucket at the end of `day`; None before the case opened."""
    if day < c.opened_on:
        return None
    if c.paid_by(day) >= c.debt_fen > 0 or (
        c.paid_in_full and c.closed_on is not None and c.closed_on <= day
    ):
        return CURRENT  # cured
    if c.closed_on is not None and c.closed_on <= day:
        return CLOSED
    return bucket_of((day - c.overdue_since).days, buckets)


def bucket_history(
    cases: Iterable[CaseOutcome], ends: Sequence[date], buckets=DEFAULT_BUCKETS
) -> dict[str, list[str | None]]:  # type: ignore[no-untyped-def]
    return {c.loan_no: [bucket_at(c, d, buckets) for d in ends] for c in cases}


@dataclass(frozen=True)
class Roll:
    month: date  # the month end the cases rolled from
    from_bucket: str
    to_bucket: str
    cases: int
    rate: float  # of the cases in from_bucket at that month end


def roll_rates(history: dict[str, list[str | None]], ends: Sequence[date]) -> list[Roll]:
    """From each delinquent bucket at one month end to every bucket at the next."""
    out: list[Roll] = []
    for i in range(len(ends) - 1):
        counts: dict[tuple[str, str], int] = defaultdict(int)
        totals: dict[str, int] = defaultdict(int)
        for row in history.values():
            a, b = row[i], row[i + 1]
            if a is None or b is None or a in (CURRENT, CLOSED):
                continue
            counts[a, b] += 1
            totals[a] += 1
        for (a, b), n in sorted(counts.items()):
            out.append(Roll(ends[i], a, b, n, n / totals[a]))
    return out


@dataclass(frozen=True)
class GroupOutcome:
    group_by: str
    group: str
    cases: int
    debt_fen: int
    collected_fen: int
    recovery_rate: float
    cured: int
    cure_rate: float
    promises_kept: int
    promises_broken: int
    promise_kept_rate: float | None
    median_days_to_first_contact: float | None
    visits: int
    visits_per_collector_week: float | None
    waived_fen: int = 0  # waived on these cases: not collected, and not in debt_fen's place


def _key(c: CaseOutcome, group_by: str) -> str:
    return getattr(c, group_by) or "-"


def outcomes(
    cases: Sequence[CaseOutcome], group_by: str, first: date, last: date
) -> list[GroupOutcome]:
    """One row per group; visits and collector-weeks counted within [first, last]."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by: one of {', '.join(GROUPS)}")
    weeks = max(1.0, ((last - first).days + 1) / 7)
    groups: dict[str, list[CaseOutcome]] = defaultdict(list)
    for c in cases:
        groups[_key(c, group_by)].append(c)
    rows: list[GroupOutcome] = []
    for name, members in sorted(groups.items()):
        debt = sum(c.debt_fen for c in members)
        collected = sum(c.paid_fen for c in members)
        cured = sum(1 for c in members if c.paid_in_full)
        kept = sum(c.promises.count("KEPT") for c in members)
        broken = sum(c.promises.count("BROKEN") for c in members)
        waits = [(c.first_contact_on - c.opened_on).days for c in members if c.first_contact_on]
        visits = [v for c in members for v in c.visits if first <= v[1] <= last]
        collectors = {who for who, _ in visits}
        rows.append(
            GroupOutcome(
                group_by=group_by,
                group=name,
                cases=len(members),
                debt_fen=debt,
                collected_fen=collected,
                recovery_rate=collected / debt if debt else 0.0,
                cured=cured,
                cure_rate=cured / len(members),
                promises_kept=kept,
                promises_broken=broken,
                promise_kept_rate=kept / (kept + broken) if kept + broken else None,
                median_days_to_first_contact=statistics.median(waits) if waits else None,
                visits=len(visits),
                visits_per_collector_week=(
                    len(visits) / (len(collectors) * weeks) if collectors else None
                ),
                waived_fen=sum(c.waived_fen for c in members),
            )
        )
    return rows


@dataclass(frozen=True)
class ArmComparison:
    segment: str
    champion_cases: int
    challenger_cases: int
    champion_recovery: float  # mean per-case recovery (paid / debt, at most 1)
    challenger_recovery: float
    difference: float  # challenger - champion
    low: float  # 95 % confidence interval of the difference
    high: float

    min_cases: int = 30  # per arm, before the difference is judged at all

    @property
    def enough_cases(self) -> bool:
        return min(self.champion_cases, self.challenger_cases) >= max(2, self.min_cases)

    @property
    def beyond_noise(self) -> bool:
        return self.enough_cases and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        if not self.enough_cases:
            return f"too few cases (每组至少 {max(2, self.min_cases)} 例 needed per arm)"
        return "beyond noise" if self.beyond_noise else "within noise"


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    var = statistics.variance(values) if len(values) > 1 else 0.0
    return mean, var


MIN_ARM_CASES = 30


def compare_arms(
    cases: Sequence[CaseOutcome], min_cases: int = MIN_ARM_CASES
) -> list[ArmComparison]:
    """Per segment with both arms: the challenger's recovery against the champion's. With
    fewer than `min_cases` (at least 2) in an arm the interval means nothing (one case has no
    variance): the comparison says "too few cases" and is never beyond noise."""
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for c in cases:
        if c.arm and c.debt_fen > 0:
            by[c.segment][c.arm].append(min(1.0, c.paid_fen / c.debt_fen))
    out: list[ArmComparison] = []
    for segment, arms in sorted(by.items()):
        a, b = arms.get("CHAMPION"), arms.get("CHALLENGER")
        if not a or not b:
            continue
        (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
        se = math.sqrt(va / len(a) + vb / len(b))
        diff = mb - ma
        low, high = diff - 1.96 * se, diff + 1.96 * se
        out.append(ArmComparison(segment, len(a), len(b), ma, mb, diff, low, high, min_cases))
    return out


def recovery_by_arm_over_time(
    cases: Sequence[CaseOutcome], ends: Sequence[date]
) -> dict[str, list[float]]:
    """Per arm label (segment/arm): collected / debt of the cases opened by each month end."""
    out: dict[str, list[float]] = {}
    labels = sorted({f"{c.segment}/{c.arm}" for c in cases if c.arm})
    for label in labels:
        members = [c for c in cases if f"{c.segment}/{c.arm}" == label]
        series = []
        for d in ends:
            opened = [c for c in members if c.opened_on <= d]
            debt = sum(c.debt_fen for c in opened)
            series.append(sum(c.paid_by(d) for c in opened) / debt if debt else 0.0)
        out[label] = series
    return out


def bucket_counts(history: dict[str, list[str | None]], n: int) -> list[dict[str, int]]:
    """Per month end: how many cases in each bucket (the bucket flow chart)."""
    out: list[dict[str, int]] = [defaultdict(int) for _ in range(n)]
    for row in history.values():
        for i, b in enumerate(row):
            if b is not None:
                out[i][b] += 1
    return [dict(x) for x in out]


def collector_workload(cases: Sequence[CaseOutcome], first: date, last: date) -> dict[str, int]:
    """Visits per collector within [first, last]."""
    out: dict[str, int] = defaultdict(int)
    for c in cases:
        for who, on in c.visits:
            if first <= on <= last:
                out[who] += 1
    return dict(sorted(out.items()))


def default_period(today: date) -> tuple[date, date]:
    """The last twelve months to today."""
    return today - timedelta(days=365), today


PercentOf = Callable[[float | None], str]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
