"""The monthly compliance report per branch, from the contact log and the visits: contacts by
channel and local hour, decisions deferred or refused by rule, visits by team size, contact
attempts in the night window, and contacts with third parties.

A contact attempt is a row of the contact log that no rule stood in the way of (`rule` ''):
a message sent or failed, a call, a visit. A row with a rule is a decision that deferred or
refused one. The month and the hours are the branch's local ones (its time zone, else the
configured policy's); the night window is the policy's contact window
(`domain/rulebook.in_contact_window`, 22:00-08:00 by default).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Branch, Case, ContactAttempt, Loan, Visit
from domain.policy import Policy
from domain.rulebook import in_contact_window
from domain.timerules import local, zone
from service.local_time import in_zone

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
BORROWER = "borrower"


class MonthError(ValueError):
    """A month that is not YYYY-MM; the message names the field."""


def parse_month(text: str) -> date:
    """'2026-11' -> date(2026, 11, 1)."""
    m = _MONTH.match(text.strip())
    if not m:
        raise MonthError(f"month: {text!r} is not YYYY-MM")
    return date(int(m.group(1)), int(m.group(2)), 1)


def current_month(now: datetime, policy: Policy) -> date:
    return local(now, policy).date().replace(day=1)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


@dataclass
class NightContact:
    loan_no: str
    at: datetime
    channel: str
    party: str
    outcome: str


@dataclass
class Decision:
    channel: str
    outcome: str  # DEFERRED, BLOCKED
    rule: str
    count: int


@dataclass
class BranchMonth:
    branch: str
    month: str  # YYYY-MM
    timezone: str
    window: str  # the contact window, "08:00-22:00"
    contacts: int = 0
    # channel -> 24 counts, by the local hour of the attempt
    by_hour: dict[str, list[int]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)  # deferred or refused, by rule
    visits_by_team: dict[int, int] = field(default_factory=dict)  # team size -> visits
    night: list[NightContact] = field(default_factory=list)
    third_party: dict[str, int] = field(default_factory=dict)  # channel -> attempts

    @property
    def night_by_channel(self) -> dict[str, int]:
        return dict(sorted(Counter(n.channel for n in self.night).items()))


def compliance_report(
    sessions: sessionmaker[Session], month: date, branches: list[str] | None, policy: Policy
) -> list[BranchMonth]:
    """One report per branch (all branches when `branches` is None), for the local `month`."""
    with sessions() as session:
        query = select(Branch.code, Branch.timezone).order_by(Branch.code)
        if branches is not None:
            query = query.where(Branch.code.in_(branches))
        found = session.execute(query).all()
        return [_branch_month(session, code, in_zone(policy, tz), month) for code, tz in found]


def _branch_month(session: Session, branch: str, policy: Policy, month: date) -> BranchMonth:
    tz = zone(policy.timezone)
    start = datetime.combine(month, time(0), tzinfo=tz)
    end = datetime.combine(_next_month(month), time(0), tzinfo=tz)
    report = BranchMonth(
        branch,
        f"{month:%Y-%m}",
        policy.timezone,
        f"{policy.contact_window_start}-{policy.contact_window_end}",
    )
    in_month = (
        Case.branch_code == branch,
        ContactAttempt.at >= start,
        ContactAttempt.at < end,
    )
    attempts = session.execute(
        select(
            Loan.loan_no,
            ContactAttempt.at,
            ContactAttempt.channel,
            ContactAttempt.party,
            ContactAttempt.outcome,
        )
        .join(Case, Case.id == ContactAttempt.case_id)
        .join(Loan, Loan.id == Case.loan_id)
        .where(*in_month, ContactAttempt.rule == "")
        .order_by(ContactAttempt.at, ContactAttempt.id)
    ).all()
    third: Counter[str] = Counter()
    for loan_no, at, channel, party, outcome in attempts:
        report.contacts += 1
        report.by_hour.setdefault(channel, [0] * 24)[local(at, policy).hour] += 1
        if not in_contact_window(at, policy):
            report.night.append(NightContact(loan_no, at, channel, party, outcome))
        if party != BORROWER:
            third[channel] += 1
    report.by_hour = dict(sorted(report.by_hour.items()))
    report.third_party = dict(sorted(third.items()))
    decided = session.execute(
        select(ContactAttempt.channel, ContactAttempt.outcome, ContactAttempt.rule, func.count())
        .join(Case, Case.id == ContactAttempt.case_id)
        .where(*in_month, ContactAttempt.rule != "")
        .group_by(ContactAttempt.channel, ContactAttempt.outcome, ContactAttempt.rule)
    ).all()
    report.decisions = [Decision(c, o, r, n) for c, o, r, n in sorted(decided)]
    ids = Visit.collector_ids
    team = func.length(ids) - func.length(func.replace(ids, ",", "")) + 1
    visits = session.execute(
        select(team, func.count())
        .join(Case, Case.id == Visit.case_id)
        .where(Case.branch_code == branch, Visit.visited_at >= start, Visit.visited_at < end)
        .group_by(team)
    ).all()
    report.visits_by_team = {int(size): n for size, n in sorted(visits)}
    return report


# ---------------------------------------------------------------- CSV

CSV_HEADER = [
    "网点 branch",
    "月份 month",
    "项目 section",
    "渠道 channel",
    "分项 item",
    "结果 outcome",
    "次数 count",
]
BY_HOUR = "按渠道与时段的联系 contacts by channel and local hour"
DECISIONS = "推迟或拒绝的决定 decisions deferred or refused, by rule"
TEAMS = "按人数的外访 visits by team size"
NIGHT = "夜间联系 contacts in the night window"
NIGHT_DETAIL = "夜间联系明细 night contact"
THIRD = "第三方联系 third-party contacts"


def csv_rows(r: BranchMonth) -> Iterator[list[str | int]]:
    base = [r.branch, r.month]
    for channel, hours in r.by_hour.items():
        for hour, n in enumerate(hours):
            if n:
                yield [*base, BY_HOUR, channel, f"{hour:02d}", "", n]
    for d in r.decisions:
        yield [*base, DECISIONS, d.channel, d.rule, d.outcome, d.count]
    for size, n in r.visits_by_team.items():
        yield [*base, TEAMS, "VISIT", f"{size}人 team of {size}", "", n]
    night = f"outside {r.window}"
    for channel, n in r.night_by_channel.items():
        yield [*base, NIGHT, channel, night, "", n]
    for c in r.night:
        at = c.at.astimezone(zone(r.timezone)).strftime("%Y-%m-%d %H:%M")
        yield [*base, NIGHT_DETAIL, c.channel, f"{c.loan_no} {at} {c.party}", c.outcome, 1]
    for channel, n in r.third_party.items():
        yield [*base, THIRD, channel, "party != borrower", "", n]


def to_csv(reports: list[BranchMonth]) -> bytes:
    """UTF-8 with a BOM (spreadsheets in Chinese open it as such)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_HEADER)
    for r in reports:
        for row in csv_rows(r):
            w.writerow(row)
    return out.getvalue().encode("utf-8-sig")
