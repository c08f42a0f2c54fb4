"""The CLI's case actions: visit report, plan, signature, reassignment, holds, closing; calls,
consent and a message to a loan contact under the rule set.

Each is sent to the case as an Update and printed with the case's answer. Exit codes:
0 accepted; 1 refused by the case (the reason names the field) or no such case;
3 a batch where some cases refused. The operator's name (--by) goes into the case's
history and the audit trail. Waiver proposals and decisions act as a named user of the
users table (--user): their role and name come from that row, never from the command line.
Dates and times without an offset are the case's local time: its branch's time zone, else
the configured policy's (service/local_time.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime

from tqdm import tqdm

from db.engine import make_engine, session_factory
from domain.human_input import CONSENT_CHANNELS
from domain.promises import PROMISE_SOURCES, WAIVER_KINDS
from domain.stages import (
    MANUAL_CLOSE_STAGES,
    CallOutcome,
    ConsentKind,
    LegalDecision,
    VisitOutcome,
)
from feeds.csv_files import RowError, yuan_to_fen
from service.case_record import case_header
from service.case_updates import ActionOutcome, CaseActions
from service.settings import Settings
from service.temporal_client import connect
from service.users import Principal, Role, principal_named

REFUSED, SOME_REFUSED = 1, 3


def moment(text: str) -> datetime:
    """ISO 8601; without an offset it is the case's local time (read by CaseActions)."""
    return datetime.fromisoformat(text)


def until(text: str) -> date | datetime:
    """A date means the end of that day on the case's clock; a time is read as `moment`."""
    if "T" in text or " " in text:
        return moment(text)
    return date.fromisoformat(text)


def fen(text: str) -> int:
    errors: list[RowError] = []
    amount = yuan_to_fen(0, "down-payment", text, errors)
    if errors:
        raise argparse.ArgumentTypeError(errors[0].message)
    return amount


def ids(text: str) -> list[str]:
    return [i.strip() for i in text.replace("，", ",").split(",") if i.strip()]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def action(
        name: str, help: str, loan: bool = True, user: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if loan:
            p.add_argument("loan_no")
        if user:  # acts as this user of the users table: their role and name
            p.add_argument("--user", required=True, help="a username (users table)")
        else:
            p.add_argument("--by", required=True, help="who does this (history and audit trail)")
        p.set_defaults(run=lambda args, settings: asyncio.run(run(args, settings)))
        return p

    v = action("visit", "report a field visit's outcome")
    v.add_argument("--outcome", required=True, choices=list(VisitOutcome))
    v.add_argument("--collectors", type=ids, required=True, help="A or A,B for a team")
    v.add_argument("--at", type=moment, help="when (default now); ISO, the branch's local time")
    v.add_argument("--notes", default="")
    p = action("plan", "propose an even monthly repayment plan over what is outstanding")
    p.add_argument("--months", type=int, required=True)
    p.add_argument("--first-due", type=date.fromisoformat, required=True)
    p.add_argument("--down-payment", type=fen, default=0, help="yuan, due on the first date")
    p.add_argument("--notes", default="")
    s = action("sign", "confirm the borrower signed an agreement version")
    s.add_argument("--version", type=int, required=True)
    s.add_argument("--sha256", required=True, help="as printed on the signed agreement")
    s.add_argument("--collector", required=True)
    s.add_argument("--place", required=True)
    s.add_argument("--at", type=moment, help="when (default now)")
    r = action("reassign", "give a case to other collectors")
    r.add_argument("--to", type=ids, required=True, help="A or A,B for a team")
    r.add_argument("--reason", required=True)
    h = action("hold", "pause collection (hardship) for one case or a whole region", loan=False)
    target = h.add_mutually_exclusive_group(required=True)
    target.add_argument("--loan", dest="loan_no")
    target.add_argument("--region", help="a county (branches' region) or a branch code")
    h.add_argument("--until", type=until, required=True, help="a date (end of day) or time")
    h.add_argument("--reason", required=True)
    lf = action("lift-hold", "resume collection before the hold ends")
    lf.add_argument("--reason", required=True)
    c = action("close", "close a case by hand")
    c.add_argument("--outcome", required=True, choices=sorted(MANUAL_CLOSE_STAGES))
    c.add_argument("--reason", required=True)
    ca = action("call", "record a phone call attempt (the day's cap and the night window apply)")
    ca.add_argument("--outcome", required=True, choices=list(CallOutcome))
    ca.add_argument("--collector", required=True, help="who called: a collector of the case")
    ca.add_argument("--at", type=moment, help="when (default now); ISO, the branch's local time")
    ca.add_argument("--party", default="borrower", help="borrower (default) or contact:<id>")
    ca.add_argument("--notes", default="")
    co = action("consent", "the borrower gives or withdraws consent (night contact, or SMS)")
    co.add_argument("--kind", default="NIGHT_CONTACT", choices=list(ConsentKind),
                    help="NIGHT_CONTACT (default) or SMS: --withdraw --kind SMS is an opt-out "
                    "told by call or visit")  # fmt: skip
    given = co.add_mutually_exclusive_group(required=True)
    given.add_argument("--give", dest="given", action="store_true")
    given.add_argument("--withdraw", dest="given", action="store_false")
    co.add_argument("--how", required=True, choices=CONSENT_CHANNELS)
    co.add_argument("--at", type=moment, help="when (default now)")
    co.add_argument("--notes", default="")
    pr = action("promise", "record a promise to pay (承诺还款): an amount by a date")
    pr.add_argument("--amount", type=fen, required=True, help="yuan")
    pr.add_argument("--date", type=date.fromisoformat, required=True, help="the local date")
    pr.add_argument("--source", required=True, choices=PROMISE_SOURCES)
    pr.add_argument("--notes", default="")
    wv = action(
        "waiver",
        "propose waiving penalty/interest (息费减免) or a settlement (一次性结清)",
        user=True,
    )
    wv.add_argument("--kind", default="WAIVER", choices=WAIVER_KINDS)
    wv.add_argument("--penalty", type=fen, default=0, help="yuan of penalty to waive")
    wv.add_argument("--interest", type=fen, default=0, help="yuan of interest to waive")
    wv.add_argument("--settle", type=fen, default=0, help="SETTLEMENT: the lump sum, yuan")
    wv.add_argument("--reason", required=True)
    dw = action(
        "decide-waiver", "approve or refuse a waiver request (the user's role's limit)", user=True
    )
    dw.add_argument("--seq", type=int, required=True, help="the request's number")
    verdict = dw.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", dest="approve", action="store_true")
    verdict.add_argument("--refuse", dest="approve", action="store_false")
    dw.add_argument("--reason", default="")
    ld = action("legal-decision", "decide a legal review (法务审查; a LEGAL user)", user=True)
    ld.add_argument("--decision", required=True, choices=list(LegalDecision))
    ld.add_argument("--reason", required=True)
    ld.add_argument("--advice", default="", help="RETURN_TO_NEGOTIATION: for the collectors")
    lh = action("lift-hostile", "lift the hostile-visit team (a supervisor)", user=True)
    lh.add_argument("--reason", required=True)
    cp = action("complaint", "record a borrower's complaint from a visit or a call", user=True)
    cp.add_argument("--source", required=True, choices=["VISIT", "CALL"])
    cp.add_argument("--summary", required=True)
    cp.add_argument("--about", default="", help="the collector complained about, if named")
    cp.add_argument("--at", type=moment, help="when (default now); ISO, the branch's local time")
    ac = action("acknowledge-complaint", "acknowledge a complaint (受理)", user=True)
    ac.add_argument("--number", type=int, required=True)
    rc = action("resolve-complaint", "resolve a complaint; the outcome is texted", user=True)
    rc.add_argument("--number", type=int, required=True)
    rc.add_argument("--outcome", required=True, help="what the borrower is told (one SMS)")
    tp = action("third-party", "ask a loan contact by SMS to pass a message on (names no debt)")
    tp.add_argument("--contact", type=int, required=True, help="the id `contacts --loan` lists")


def _print(loan_no: str, outcome: ActionOutcome) -> int:
    if outcome.accepted:
        print(f"{loan_no}: accepted, stage {outcome.stage}: {outcome.message}")
        return 0
    print(f"{loan_no}: refused: {outcome.message}", file=sys.stderr)
    return REFUSED


async def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    try:
        if getattr(args, "user", None) is not None:
            named = principal_named(sessions, args.user)
            if named is None:
                engine.dispose()
                print(f"user: no active user {args.user!r} in the users table", file=sys.stderr)
                return REFUSED
            header = case_header(sessions, args.loan_no)
            if header is None or not named.may_see(*header):
                engine.dispose()
                print(f"loan_no: no case {args.loan_no} that {args.user} can see", file=sys.stderr)
                return REFUSED
            who = named
        else:
            who = Principal(args.by, Role.SUPERVISOR)
    except BaseException:
        engine.dispose()
        raise
    acts = CaseActions(await connect(settings), sessions, settings.policy())
    now = datetime.now(UTC)
    try:
        if args.command == "hold" and args.region:
            return await _hold_region(acts, who, args)
        outcome = await _one(acts, who, args, now)
        return _print(args.loan_no, outcome)
    finally:
        engine.dispose()


async def _one(
    acts: CaseActions, who: Principal, args: argparse.Namespace, now: datetime
) -> ActionOutcome:
    loan = args.loan_no
    match args.command:
        case "visit":
            return await acts.report_visit(
                who, loan, args.outcome, args.collectors, args.at or now, args.notes
            )
        case "plan":
            return await acts.propose_even_plan(
                who, loan, args.months, args.first_due, args.down_payment, args.notes
            )
        case "sign":
            return await acts.confirm_signature(
                who, loan, args.version, args.sha256, args.collector, args.at or now, args.place
            )
        case "reassign":
            return await acts.reassign(who, loan, args.to, args.reason)
        case "hold":
            return await acts.hold(who, loan, args.until, args.reason)
        case "lift-hold":
            return await acts.lift_hold(who, loan, args.reason)
        case "close":
            return await acts.close(who, loan, args.outcome, args.reason)
        case "call":
            return await acts.record_call(
                who, loan, args.outcome, args.collector, args.at or now, args.party, args.notes
            )
        case "consent":
            return await acts.record_consent(
                who, loan, args.given, args.how, args.at or now, args.notes, args.kind
            )
        case "third-party":
            return await acts.contact_third_party(who, loan, args.contact)
        case "promise":
            return await acts.record_promise(
                who, loan, args.amount, args.date, args.source, args.notes
            )
        case "waiver":
            return await acts.propose_waiver(
                who, loan, args.kind, args.reason, args.penalty, args.interest, args.settle
            )
        case "decide-waiver":
            return await acts.decide_waiver(who, loan, args.seq, args.approve, args.reason)
        case "legal-decision":
            return await acts.legal_decision(who, loan, args.decision, args.reason, args.advice)
        case "lift-hostile":
            return await acts.lift_hostile_team(who, loan, args.reason)
        case "complaint":
            return await acts.record_complaint(
                who, loan, args.source, args.summary, args.at or now, args.about
            )
        case "acknowledge-complaint":
            return await acts.acknowledge_complaint(who, loan, args.number)
        case "resolve-complaint":
            return await acts.resolve_complaint(who, loan, args.number, args.outcome)
    raise AssertionError(args.command)


async def _hold_region(acts: CaseActions, who: Principal, args: argparse.Namespace) -> int:
    loans = acts.open_loans_in(args.region)
    if not loans:
        print(f"region {args.region}: no open case (unknown region or branch?)", file=sys.stderr)
        return REFUSED
    # The bar shows on a terminal; scripts (no TTY) get only the summary and the refusals.
    with tqdm(total=len(loans), desc=f"hold {args.region}", unit="case", disable=None) as bar:
        results = await acts.hold_many(
            who, loans, args.until, args.reason, progress=lambda *_: bar.update(1)
        )
    refused = {n: o for n, o in results.items() if not o.accepted}
    for loan_no, outcome in sorted(refused.items()):
        print(f"{loan_no}: refused: {outcome.message}", file=sys.stderr)
    print(f"region {args.region}: {len(results) - len(refused)} cases held, {len(refused)} refused")
    return SOME_REFUSED if refused else 0
