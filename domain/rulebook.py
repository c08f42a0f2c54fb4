"""The rule set's clauses for calls, visits, consent and third parties, as pure functions.

Each is enforced twice: by the workflow (an Update's validator or a step) and again by the
activity with its own clock and the database's records. README's "Collection by the rules"
table maps each clause to its policy field, the places that enforce it and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from domain.models import CallEntry, ConsentChange, ThirdPartyEntry
from domain.policy import Policy
from domain.stages import FAILED_CALLS, UNANSWERED_CALLS, CallOutcome, ConsentKind
from domain.timerules import in_window, local_date

MEMORY = timedelta(days=8)  # what the case keeps of its calls and third-party contacts


def in_contact_window(moment: datetime, policy: Policy) -> bool:
    """Whether calls and visits are allowed at `moment` (borrower local time) without
    consent. A window whose start equals its end is open all day."""
    start, end = policy.contact_window
    return start == end or in_window(moment, (start, end), policy)


def has_consent(consents: Iterable[ConsentChange], kind: ConsentKind) -> bool:
    """The newest change of that kind decides (consent can be withdrawn)."""
    latest = None
    for c in consents:
        if c.kind == kind and (latest is None or c.at >= latest.at):
            latest = c
    return latest is not None and latest.given


def night_refusal(moment: datetime, consents: Iterable[ConsentChange], policy: Policy) -> str:
    """'' when a call or visit at `moment` is allowed, else why not."""
    if in_contact_window(moment, policy) or has_consent(consents, ConsentKind.NIGHT_CONTACT):
        return ""
    return (
        f"no calls or visits between {policy.contact_window_end} and "
        f"{policy.contact_window_start} without the borrower's consent ({policy.ruleset})"
    )


def unanswered_today(calls: Iterable[CallEntry], party: str, now: datetime, policy: Policy) -> int:
    today = local_date(now, policy)
    return sum(
        1
        for c in calls
        if c.party == party
        and CallOutcome(c.outcome) in UNANSWERED_CALLS
        and local_date(c.at, policy) == today
    )


def call_refusal(
    calls: Sequence[CallEntry], party: str, at: datetime, outcome: CallOutcome, policy: Policy
) -> str:
    """'' when one more call attempt to `party` at `at` is within the daily cap."""
    if outcome not in UNANSWERED_CALLS:
        return ""  # an answered call is no "unanswered attempt"
    done = unanswered_today(calls, party, at, policy)
    if done >= policy.max_unanswered_calls_per_day:
        return (
            f"outcome: already {done} unanswered calls to this number today; the rule set "
            f"({policy.ruleset}) allows {policy.max_unanswered_calls_per_day} a day"
        )
    return ""


def remember(entries: list, at: datetime) -> list:  # type: ignore[type-arg]
    return [e for e in entries if at - e.at < MEMORY]


def failures_after_call(failures: int, outcome: CallOutcome) -> int:
    """Failed attempts in a row after a call to the debtor."""
    return failures + 1 if outcome in FAILED_CALLS else 0


def contact_lost(has_phone: bool, failures_in_row: int, policy: Policy) -> bool:
    """Contact with the debtor is lost: no usable number, or the policy's failures in a row."""
    return not has_phone or failures_in_row >= policy.contact_lost_after_failures


def third_party_refusal(
    related: bool,
    lost: bool,
    history: Sequence[ThirdPartyEntry],
    contact_id: int,
    now: datetime,
    policy: Policy,
) -> str:
    """'' when the loan contact may be contacted now, else why not."""
    if related:  # a guarantor or co-borrower may be contacted like the debtor, once a day
        day = timedelta(days=1)
        if any(e.contact_id == contact_id and now - e.at < day for e in history):
            return "contact_id: this guarantor or co-borrower was contacted today already"
        return ""
    if not lost:
        return (
            "contact_id: an unrelated third party may be contacted only after contact with "
            f"the debtor is lost ({policy.ruleset})"
        )
    interval = timedelta(seconds=policy.third_party_interval_seconds)
    recent = [e for e in history if e.contact_id == contact_id and now - e.at < interval]
    if recent:
        return (
            f"contact_id: this third party was contacted {recent[-1].at.isoformat()}; at most "
            f"once in {policy.third_party_interval_seconds // 86400} days"
        )
    return ""
