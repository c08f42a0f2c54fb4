"""A collector's phone actions sent with an id made on the phone (issue 15, weak signal): which
actions may carry one, the Update id it becomes, what makes a repeat a repeat, and how long
the case remembers it. Pure: used by the service, the pages' route and the workflow.

- Only the phone's own actions (the forms the page queues offline) carry an id: anything
  else with one is refused, naming `op_id`.
- The Update id is namespaced by the action and the user: another user, or another action,
  that happens to send the same id gets an Update of its own, never Temporal's cached answer
  to somebody else's.
- The case answers a repeat as the first time only when it is the same Update (name) with
  the same request (digest); the same id on anything else is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from domain.human_input import Refused, recorded_time
from domain.models import AppliedOp, CheckOut
from domain.names import PHONE_UPDATE_PREFIX
from domain.policy import Policy

# The Updates a phone's queued form sends (the service's action names are the same).
PHONE_UPDATES = (
    "report_visit",
    "record_call",
    "check_in",
    "check_out",
    "need_help",
    "record_promise",
)
# The same actions as the pages' routes name them (/cases/{loan}/{action}).
PHONE_ROUTES = ("visit", "call", "check-in", "check-out", "help", "promise")
OP_ID_REFUSED = (
    "op_id: only a phone's visit, call, check-in, check-out, need-help or promise carries "
    "an op_id (离线编号仅用于手机记录)"
)
OP_ID_REUSED = (
    "op_id: already used for another action (此编号已用于另一操作); send it with a new op_id"
)


def phone_update_id(update: str, username: str, op_id: str) -> str:
    """The Update id of a phone's action: the same for a repeat by the same user of the same
    action, another for anybody or anything else (the phone's id alone is not trusted)."""
    key = hashlib.sha256(f"{username}:{op_id}".encode()).hexdigest()[:24]
    return f"{PHONE_UPDATE_PREFIX}{update}-{key}"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def request_digest(request: object) -> str:
    """What a phone sent, digested, its recorded time aside: the service corrects that time
    by the phone's clock at sending (`sent_at`), so two sends of one action differ in it by
    the network's delay. A check-out is its visit report (a report by the team checked in
    checks the visit out as well)."""
    if isinstance(request, CheckOut):
        request = request.report
    plain = _plain(request)
    found = recorded_time(request)
    if found is not None and isinstance(plain, dict):
        plain.pop(found[0], None)
    text = json.dumps(plain, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def with_recorded_time(request: Any, at: datetime) -> Any:
    """The request with the time the collector recorded replaced by `at`."""
    if isinstance(request, CheckOut):
        return dataclasses.replace(request, report=with_recorded_time(request.report, at))
    found = recorded_time(request)
    if found is None:
        return request
    return dataclasses.replace(request, **{found[0]: at})


def kept_for(policy: Policy) -> timedelta:
    """How long a case remembers an applied phone action: a repeat any later is refused on
    its recorded time anyway (older than offline_max_age_hours, give or take the skew)."""
    return timedelta(hours=policy.offline_max_age_hours, minutes=policy.offline_clock_skew_minutes)


def pruned(ops: Sequence[AppliedOp], now: datetime, policy: Policy, most: int) -> list[AppliedOp]:
    """The applied actions still worth remembering at `now`: younger than `kept_for`, the
    newest `most` of them (one kept before times were is kept by count only)."""
    oldest = now - kept_for(policy)
    return [op for op in ops if op.at is None or op.at >= oldest][-most:]


def clock_corrected(
    policy: Policy, request: Any, sent_at: datetime, now: datetime
) -> tuple[Any, str]:
    """The request with its recorded time on the server's clock, and a note for the case's
    record when the phone's clock was off by more than the policy's skew.

    The phone sends its clock at sending (`sent_at`) with the time it recorded: both are the
    phone's, so `sent_at - recorded` is how long ago it was recorded, whatever the phone's
    clock says, and the true time is the server's `now` less that. (A phone 10 minutes slow
    records a call at 22:05 as 21:55 and sends it at once: it was at 22:05, the night rule's.)
    Refused, naming the field, when the phone says it sent before it recorded, or recorded
    longer ago than the policy's `offline_max_age_hours`."""
    found = recorded_time(request)
    if found is None:
        return request, ""  # a promise: nothing the phone's clock said is kept
    name, at = found
    if sent_at.utcoffset() is None:
        raise Refused("sent_at: a time must carry its time zone")
    if at.utcoffset() is None:
        raise Refused(f"{name}: a time must carry its time zone")
    ago = sent_at - at
    if ago < timedelta(0):
        raise Refused(f"sent_at: before {name}; the phone sends what it recorded earlier")
    if ago > timedelta(hours=policy.offline_max_age_hours):
        raise Refused(
            f"{name}: recorded more than {policy.offline_max_age_hours} hours ago, too late "
            "to send from the phone (离线记录已超时); ask the supervisor to record it"
        )
    true = now - ago
    off = now - sent_at  # > 0: the phone's clock is slow
    note = ""
    if abs(off) > timedelta(minutes=policy.offline_clock_skew_minutes):
        minutes = round(abs(off).total_seconds() / 60)
        zh, en = ("慢", "slow") if off > timedelta(0) else ("快", "fast")
        note = (
            f"; 手机时间{zh}{minutes}分钟 phone clock {minutes} min {en}: {name} "
            f"{at.isoformat(timespec='seconds')} on the phone is "
            f"{true.astimezone(at.tzinfo).isoformat(timespec='seconds')}"
        )
    return with_recorded_time(request, true.astimezone(at.tzinfo)), note
