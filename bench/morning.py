"""Section `morning` (issue 17, "the 08:00 wave"): N cases whose first notice waited for the
end of the night go out when the contact window opens, through a Twilio-like provider that
takes R messages a second and answers 429 above that (bench/sms_provider.py).

The cases start in quiet hours under a policy whose window opens a little later (its
`quiet_end` set to a minute 1-2 minutes ahead, or --morning-lead seconds for many cases, in
the policy's own time zone: nobody waits for a real 08:00). `python worker.py` processes
send: --morning-case-workers with the cases role, and --morning-sms-workers with the sms
role only, all with SMS_RATE_PER_SECOND = 0.95 R (HEADROOM), so the sms task queue hands out
that many sends a second to all of them together. Measured from the window's opening to
the provider's last 201:

  drain ratio   (N / R) / drain time (target ≥ 0.9: all sent within 1.1 × N / R)
  429s          refusals by the provider (the queue's rate limit should leave none)
  outside       messages the provider took outside the contact window
  DPD order     of every two messages of different priority bands (days past due: ≥ 90,
                ≥ 60, ≥ 30, less), the share sent in band order (1.0: every more overdue
                band's message before every less overdue one's)
  duplicates    numbers that got the notice more than once

and a variant with a window that cannot hold them all (--morning-short-window minutes, at a
rate that fills it with about half the messages): which bands went out inside it (the most
overdue first), and that nothing went out after it closed (the rest wait for tomorrow).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bench.harness import add_loans, bounded, database, dev_server, worker_processes
from bench.lifecycle import worker_env
from bench.sms_provider import rate_limited_provider, twilio_env
from db.models import Borrower, Loan
from domain.case_rules import SMS_PRIORITY_BANDS, sms_priority
from domain.policy import Policy
from domain.timerules import days_past_due, local, local_date
from service.case_start import start_case
from service.dev_server import ONE_PARTITION_ARGS

# The workers' SMS_RATE_PER_SECOND against the provider's rate: sends leave the task queue at
# exactly the limit's pace but reach the provider with a few milliseconds' jitter, so at the
# provider's own rate some arrive just before its bucket refills (a 429, retried); a little
# under it, none do.
HEADROOM = 0.95
DPD_SPREAD = 180  # the cases' days past due: 1..180, spread over the four priority bands


def dpd_of(i: int) -> int:
    return 1 + (i * 37) % DPD_SPREAD


def default_lead(n: int, case_workers: int) -> float:
    """Seconds from the first start to the opening: a case takes some six activities and
    workflow tasks to reach its wait (a worker runs some 40 of each a second, fewer on a
    busy machine), so 0.2 s a case a worker, at least two minutes."""
    return max(120.0, n * 0.2 / case_workers)


def _hhmm(moment: datetime, policy: Policy) -> str:
    return f"{local(moment, policy):%H:%M}"


def wave_policy(
    now: datetime, lead_s: float, window_min: int | None
) -> tuple[Policy, datetime, datetime]:
    """A policy in whose quiet hours `now` lies, its window opening at the first whole minute
    at least `lead_s` ahead (in the policy's zone) and, with `window_min`, closing that many
    minutes later; (policy, opening, closing: a day later when no window_min)."""
    base = Policy()
    opening = (now + timedelta(seconds=lead_s)).replace(second=0, microsecond=0)
    opening += timedelta(minutes=1)
    if window_min is None:  # quiet from a minute ago until the opening: a whole day's window
        closing = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
        closing += timedelta(days=1)
    else:
        closing = opening + timedelta(minutes=window_min)
    policy = base.with_overrides(
        {"quiet_start": _hhmm(closing, base), "quiet_end": _hhmm(opening, base)}
    )
    return policy, opening, closing


def band_order(bands: list[int]) -> float:
    """Of every two messages of different bands, the share sent in band order (1 first)."""
    seen: Counter[int] = Counter()
    inverted = total = 0
    for b in bands:  # pairs (earlier, this): inverted when the earlier one's band is higher
        earlier = sum(seen.values())
        same = seen[b]
        inverted += sum(c for band, c in seen.items() if band > b)
        total += earlier - same
        seen[b] += 1
    return 1.0 - inverted / total if total else 1.0


async def _start_and_park(
    client: Any, tq: str, specs: list[Any], policy: Policy, opening: datetime, in_flight: int
) -> None:
    """Start every case, at most `in_flight` of them not yet waiting for the window's opening
    at a time (a worker flooded with new cases' first workflow tasks on a busy machine times
    them all out, again and again), until every one waits (its next action is the notice at
    the opening); an error if the window opens first."""

    def at(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # A range, not `=`: the dev server's visibility matches no datetime by equality.
    second = timedelta(seconds=1)
    query = (
        f"TaskQueue='{tq}' AND NextActionAt BETWEEN '{at(opening - second)}' "
        f"AND '{at(opening + second)}'"
    )
    n, started, said = len(specs), 0, time.monotonic()
    while (waiting := (await client.count_workflows(query)).count) < n:
        if time.monotonic() - said > 30:
            said = time.monotonic()
            left = (opening - datetime.now(UTC)).total_seconds()
            print(f"  {waiting} of {n} cases wait for the window, {left:.0f} s to go", flush=True)
        if datetime.now(UTC) > opening - second:
            raise RuntimeError(
                f"the contact window opened with {waiting} of {n} cases waiting for it: give "
                "the cases more time to start (--morning-lead SECONDS)"
            )
        room = min(n - started, in_flight - (started - waiting))
        if room > 0:
            batch, started = specs[started : started + room], started + room
            await bounded(
                batch, lambda spec: start_case(client, tq, spec.loan_no, spec.branch, policy)
            )
        else:
            await asyncio.sleep(0.5)


async def bench_morning(
    n: int,
    rate: float,
    db: str = "sqlite",
    sms_workers: int = 1,
    lead_s: float | None = None,
    window_min: int | None = None,
    case_workers: int = 1,
    in_flight: int = 200,
) -> dict[str, float]:
    """One wave of N first notices at `rate` a second; `window_min`: the short window."""
    lead = lead_s if lead_s is not None else default_lead(n, case_workers)
    env = await dev_server(extra_args=ONE_PARTITION_ARGS)
    try:
        with (
            database(db) as (url, sessions, tmp),
            rate_limited_provider(rate) as (base_url, provider),
        ):
            report = add_loans(sessions, tmp / "export.csv", n)
            policy = Policy()
            today = local_date(datetime.now(UTC), policy)
            dpd_by_loan = {s.loan_no: dpd_of(i) for i, s in enumerate(report.good)}
            with sessions.begin() as session:
                for loan_no, dpd in dpd_by_loan.items():
                    session.execute(
                        update(Loan)
                        .where(Loan.loan_no == loan_no)
                        .values(overdue_since=today - timedelta(days=dpd))
                    )
                rows = session.execute(
                    select(Borrower.phone, Loan.overdue_since).join(
                        Loan, Loan.borrower_id == Borrower.id
                    )
                ).all()
            now = datetime.now(UTC)
            wave, opening, closing = wave_policy(now, lead, window_min)
            # The bands as the workflow computes them: days past due when it schedules the
            # send, i.e. at the opening (a run crossing local midnight moves some cases).
            # Numbered 1 (≥ 90 days) to 4 (less than 30) whatever their priority keys.
            first = SMS_PRIORITY_BANDS[0][1]
            band_of = {
                phone: sms_priority(days_past_due(since, opening, policy)) - first + 1
                for phone, since in rows
            }
            policy = wave
            address = env.client.service_client.config.target_host
            tq = f"morning-{uuid.uuid4().hex[:6]}"
            wenv = worker_env(address, tq, url, tmp / "data")
            wenv.update(twilio_env(base_url, rate * HEADROOM))
            cmd = [sys.executable, "worker.py"]
            async with (
                worker_processes(case_workers, cmd, {**wenv, "WORKER_ROLES": "cases"}),
                worker_processes(sms_workers, cmd, {**wenv, "WORKER_ROLES": "sms"}),
            ):
                started = time.time()
                await _start_and_park(env.client, tq, report.good, policy, opening, in_flight)
                parked_s = time.time() - started
                expected = len(report.good) if window_min is None else None
                await _drain(provider, opening, closing, rate, len(report.good), expected)
            with provider.lock:
                accepted = list(provider.accepted)
                refused = provider.refused
    finally:
        await env.shutdown()
    sent_to = len(report.good)  # the loans imported: every one a case, a message
    figures = _figures(accepted, refused, band_of, opening, closing, sent_to, rate, window_min)
    return {**figures, "parked_s": parked_s, "lead_s": lead}


async def _drain(
    provider: Any,
    opening: datetime,
    closing: datetime,
    rate: float,
    n: int,
    expected: int | None,
) -> None:
    """Until the provider took `expected` messages (a time limit of 3 × N / rate plus two
    minutes after the opening), or, for the short window, until it has been closed a while
    with nothing more taken."""
    limit = opening.timestamp() + 3 * n / rate + 120
    while time.time() < limit:
        await asyncio.sleep(0.5)
        with provider.lock:
            taken = len(provider.accepted)
            last = provider.accepted[-1].at if provider.accepted else 0.0
        if expected is not None and taken >= expected:
            return
        if expected is None and time.time() > max(closing.timestamp(), last) + 15:
            return


def _figures(
    accepted: list[Any],
    refused: int,
    band_of: dict[str, int],
    opening: datetime,
    closing: datetime,
    n: int,
    rate: float,
    window_min: int | None,
) -> dict[str, float]:
    t0, t1 = opening.timestamp(), closing.timestamp()
    per_number = Counter(m.to for m in accepted)
    bands = [band_of.get(m.to, 0) for m in accepted]
    drain = (accepted[-1].at - t0) if accepted else float("nan")
    totals = Counter(band_of.values())
    # A band's share sent inside the window: distinct numbers the provider took while open.
    sent = Counter(band_of.get(to, 0) for to in {m.to for m in accepted if t0 <= m.at < t1})
    # The drain counts only when every case's message went: N / rate over the time it took.
    complete = len(per_number) >= n
    if not complete and window_min is None:
        print(f"  morning: only {len(per_number)} of {n} messages sent: no drain ratio", flush=True)
    figures = {
        "messages": float(len(accepted)),
        "cases": float(n),
        "rate": rate,
        "drain_s": drain,
        "ratio": (n / rate) / drain if accepted and complete else 0.0,
        "first_s": (accepted[0].at - t0) if accepted else float("nan"),
        "refused_429": float(refused),
        "outside_window": float(sum(1 for m in accepted if not t0 <= m.at < t1)),
        "duplicates": float(sum(c - 1 for c in per_number.values() if c > 1)),
        "dpd_order": band_order(bands),
        **{
            f"band{b}_sent": sent[b] / totals[b] if totals[b] else float("nan") for b in range(1, 5)
        },
    }
    if window_min is not None:
        figures["window_s"] = window_min * 60.0
    return figures
