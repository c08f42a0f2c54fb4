"""The send-SMS activity: collection rules checked again, an outbox row, then the gateway."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clock import activity_now
from activities.contacts import third_party_check
from activities.errors import not_found, with_case_policy
from activities.metrics import count_sms
from activities.sms_gateway import (
    Channel,
    DeferredByProvider,
    GatewayResult,
    PermanentSmsFailure,
    SmsGateway,
    TemplateMessage,
    channel_of,
)
from activities.sms_receipts import apply_unmatched, failure_of
from activities.sms_templates import Registry, load_registry, template_message
from activities.texts import environment, render_sms
from db.models import Borrower, Branch, Case, ContactAttempt, SmsOutbox
from db.repository import (
    case_for_loan,
    insert_ignore,
    loan_and_case,
    loan_by_no,
    lock_borrower,
    set_next_action,
)
from domain.evidence import (
    CAP_REASON,
    CHINA_ROUTE_REASON,
    PROVIDER_LIMIT_REASON,
    cap_rule,
    decision_key,
    ruleset_label,
    sms_rule,
)
from domain.models import SmsRequest, SmsResult
from domain.names import Activities as A
from domain.policy import Policy
from domain.privacy import mask_key, mask_phone, mask_text
from domain.safety import STAFF_PURPOSES
from domain.sms_text import OPTED_OUT_CODE, segments
from domain.stages import CLOSED_STAGES
from domain.timerules import cap_release, in_quiet_hours, quiet_hours_end, quiet_hours_start

log = logging.getLogger(__name__)
DONE = ("SENT", "RECORDED", "BLOCKED", "FAILED")
LOOKBACK = timedelta(minutes=2)  # clock skew between us and the provider
# An attempt stops waiting for the provider this long (at most a third of its timeout) before
# its start-to-close timeout, and calls it only with at least MIN_CALL_S left.
ATTEMPT_MARGIN_S = 3.0
MIN_CALL_S = 0.5
# Built once: a message's outbox row is read several times an attempt (issue 17).
_OUTBOX_BY_KEY = select(SmsOutbox).where(SmsOutbox.key == bindparam("p_key"))


def _outbox_row(session: Session, key: str) -> SmsOutbox | None:
    return session.scalar(_OUTBOX_BY_KEY, {"p_key": key})


@dataclass(frozen=True)
class StaffSent:
    """How a staff text ended: its outbox status, and whether it was so before this call (a
    retry, or a second run the same day)."""

    status: str
    earlier: bool = False

    @property
    def went(self) -> bool:
        return self.status in ("SENT", "RECORDED")


class SmsActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        gateway: SmsGateway,
        language: str = "zh",
        registry: Registry | None = None,
    ) -> None:
        self.sessions = sessions
        self.gateway = gateway
        self.language = language
        self.env = environment(autoescape=False)
        self.registry = registry if registry is not None else load_registry()

    @activity.defn(name=A.SEND_SMS)
    def send_sms(self, req: SmsRequest) -> SmsResult:
        req = with_case_policy(req)
        result = self._send(req)
        if result.status != "DEFERRED" and req.next_action_stamp is not None:
            # collection-v6: the message is done (whatever its outcome), so the case's
            # next wait begins: its next action goes on the case row. Written after the
            # outbox's decision, before the workflow learns it: a retry (the decision
            # stored, `_send` answers it again) writes it again, and an older stamp than
            # the row's is refused, so the write is idempotent. A deferred send writes
            # nothing: the case waits for the contact window, not for the next action.
            with self.sessions.begin() as session:
                found = loan_and_case(session, req.loan_no, activity_now())
                if found is not None:
                    set_next_action(
                        session, found[1], req.next_action, req.next_action_at,
                        req.next_action_stamp,
                    )  # fmt: skip
        if result.status in ("SENT", "RECORDED"):
            # Whether the borrower can answer it by SMS: on a one-way channel (Twilio to a
            # mainland number) the case does not wait for a reply that cannot come.
            with self.sessions() as session:
                row = _outbox_row(session, req.key)
                number = row.to_number if row is not None else ""
            result.two_way = channel_of(self.gateway, number or "").two_way
        return result

    def _send(self, req: SmsRequest) -> SmsResult:
        now = activity_now()
        deadline = _attempt_deadline(req.policy)
        with self.sessions.begin() as session:
            found = loan_and_case(session, req.loan_no, now)
            if found is None:
                raise not_found(f"loan {req.loan_no} is not in the database")
            loan, case = found
            row = _outbox_row(session, req.key)
            if row is not None and row.status in DONE:
                return _result(row)  # a retry of a message already handled
            # Held until the PENDING row below is committed: the caps count every loan's
            # messages to this borrower, and two cases released together count one by one.
            borrower = lock_borrower(session, loan.borrower_id)
            to_number, third_party_refused = borrower.phone, ""
            if req.party != "borrower":  # a third party: its own number, its own rules
                contact, third_party_refused = third_party_check(
                    session, loan.id, req.party, req.contact_lost, now, req.policy
                )
                to_number = contact.phone
            branch = session.get(Branch, loan.branch_code)
            channel = channel_of(self.gateway, to_number or "")
            # The text the provider delivers: under a registered signature, that signature
            # in 【】; on a channel replies cannot come back on, the branch's phone instead.
            context: dict[str, object] = dict(
                cooperative=channel.signature or (branch.name if branch else loan.branch_code),
                loan_tail=loan.loan_no[-4:],
                two_way=channel.two_way,
                branch_phone=(branch.phone if branch else None) or "",
                **req.params,
            )
            body = render_sms(self.env, self.language, req.purpose, **context)
            template = self._template(channel, req.purpose, context)
            if row is None:
                insert_ignore(
                    session,
                    SmsOutbox,
                    dict(
                        key=req.key,
                        case_id=case.id,
                        borrower_id=borrower.id,
                        purpose=req.purpose,
                        to_number=to_number,
                        body=body,
                        segments=segments(body),
                        status="PENDING",
                        reason="",
                        created_at=now,
                    ),
                    ["key"],
                )
                row = _outbox_row(session, req.key)
                assert row is not None
            verdict = (
                self._rules(session, req, case, borrower, now)
                if req.party == "borrower"
                else _third_party_rules(req, case, third_party_refused, now)
            )
            if verdict is None and channel.china_route:  # the debtor's and third parties'
                verdict = _china_route_rules(session, req, to_number or "", body, now)
            if verdict is not None:
                row.status, row.reason = verdict.status, verdict.reason
                _record_decision(session, row, req, verdict, now)
                return verdict
            row.status, row.reason, row.body = "PENDING", "", body
            earlier_attempt, row.attempted_at = row.attempted_at, now
        # Committed as PENDING, with the attempt's time, before the provider sees it. After a
        # crash between the provider's acceptance and our commit, the retry asks the provider
        # whether the message went out before it sends again.
        # Every call to the provider ends inside this attempt's timeout: once Temporal retries
        # it, this attempt can no longer send beside the retry.
        to = to_number or ""
        sending = False  # asking the provider sends nothing: its failure leaves the row as it was
        try:
            found = (
                self.gateway.find_sent(
                    to,
                    body,
                    earlier_attempt - LOOKBACK,
                    timeout_s=_time_left(deadline),
                    key=req.key,
                )
                if earlier_attempt is not None
                else None
            )
            sending = not found
            closed = None if found else self._window_closed(req, earlier_attempt)
            if closed is not None:
                return closed
            result = (
                GatewayResult("SENT", found)
                if found
                else self.gateway.send(
                    to,
                    body,
                    req.key,
                    deliver_by=quiet_hours_start(now, req.policy),
                    timeout_s=_time_left(deadline),
                    template=template,
                )
            )
        except PermanentSmsFailure as failure:
            return self._failed(req, failure, now)
        except DeferredByProvider as limit:
            return self._deferred_by_provider(req, limit, earlier_attempt, now)
        except Exception as error:
            # A refusal the provider answered (429, 5xx, credentials) means nothing went out;
            # a timeout or a broken connection leaves it unknown, and the retry asks first.
            refused = isinstance(error, ApplicationError)
            self._note_retry(req.key, error, refused or not sending, earlier_attempt)
            # Temporal keeps the failure's text (history, web UI): never a full number in it.
            if isinstance(error, ApplicationError):
                raise ApplicationError(  # Temporal retries with backoff (or its delay)
                    mask_text(error.message),
                    *error.details,
                    type=error.type,
                    non_retryable=error.non_retryable,
                    next_retry_delay=error.next_retry_delay,
                ) from None
            log.warning("SMS %s attempt failed, will retry", mask_key(req.key), exc_info=True)
            raise ApplicationError(
                mask_text(f"{type(error).__name__}: {error}"), type=type(error).__name__
            ) from None
        with self.sessions.begin() as session:
            row = _outbox_row(session, req.key)
            assert row is not None
            row.status, row.provider_sid, row.sent_at = result.status, result.provider_sid, now
            apply_unmatched(session, row)  # a receipt that overtook this commit
            _record_contact(session, row, now, result.status, req.purpose, req)
            log.info("SMS %s %s to %s", mask_key(req.key), result.status, mask_phone(row.to_number))
            done = _result(row)
        count_sms(done.status, req.purpose)
        return done

    # ------------------------------------------------------------------ the staff path

    def send_staff(
        self,
        key: str,
        loan_no: str | None,
        to_number: str,
        purpose: str,
        params: dict[str, str],
        branch_code: str = "",
        deadline: float | None = None,
    ) -> StaffSent:
        """A text to a colleague (a safety alert to a supervisor's mobile, the daily training
        reminder), not to a borrower: none of the borrower rules apply (quiet hours, caps,
        opt-out, third parties: a team in danger at 22:00 is texted at 22:00), it is not a
        contact in the regulator's record and does not count towards any borrower's caps (the
        outbox row has no borrower). About a case (`loan_no`), or about none (`branch_code`
        signs it). Idempotent by `key` like every message; a failure the provider answers for
        good is kept on the row (an alert's task still stands). Called inside an activity.

        Sent once, whoever else tries at the same time: the attempt claims the outbox row in
        the transaction that checks it, and only the claimant calls the provider. A row
        another attempt holds is not sent again (a retryable error: the retry finds how it
        ended); a claim that lapsed (its attempt died) is taken over, and the provider asked
        whether the message went out before it is sent. `deadline`: the activity attempt's
        (`attempt_deadline()`), when it sends more than one text."""
        if purpose not in STAFF_PURPOSES:
            raise ApplicationError(f"{purpose}: not a staff text", type="InvalidInput")
        now = activity_now()
        deadline = deadline if deadline is not None else attempt_deadline()
        token = uuid.uuid4().hex
        # The claim lasts while this attempt may still call the provider, and its margin.
        claim_until = now + timedelta(seconds=deadline - time.monotonic() + ATTEMPT_MARGIN_S)
        with self.sessions.begin() as session:
            case_id: int | None = None
            loan_context: dict[str, object] = {}
            if loan_no is not None:
                loan = loan_by_no(session, loan_no)
                if loan is None:
                    raise not_found(f"loan {loan_no} is not in the database")
                case_id = case_for_loan(session, loan, now).id
                branch_code, loan_context = loan.branch_code, dict(loan_tail=loan.loan_no[-4:])
            branch = session.get(Branch, branch_code)

            def text_for(number: str) -> tuple[str, TemplateMessage | None]:
                channel = channel_of(self.gateway, number)
                context: dict[str, object] = dict(
                    cooperative=channel.signature or (branch.name if branch else branch_code),
                    two_way=channel.two_way,
                    branch_phone=(branch.phone if branch else None) or "",
                    **loan_context,
                    **params,
                )
                body = render_sms(self.env, self.language, purpose, **context)
                return body, self._template(channel, purpose, context)

            body, template = text_for(to_number)
            # The first write: on SQLite it takes the database's write lock (held to the
            # commit), so the row read below is the latest and no other attempt claims it
            # meanwhile; on PostgreSQL the row is locked FOR UPDATE.
            insert_ignore(
                session,
                SmsOutbox,
                dict(
                    key=key, case_id=case_id, borrower_id=None, purpose=purpose,
                    to_number=to_number, body=body, segments=segments(body),
                    status="PENDING", reason="", created_at=now,
                ),
                ["key"],
            )  # fmt: skip
            row = _locked_row(session, key)
            if row.status in DONE:
                return StaffSent(row.status, earlier=True)  # a retry, or a second run
            if row.claim_token and row.claim_until is not None and row.claim_until > now:
                wait = row.claim_until - now + timedelta(seconds=1)
                raise ApplicationError(
                    f"staff SMS {key}: another attempt is sending it (until "
                    f"{row.claim_until.astimezone(UTC):%H:%M:%S} UTC); not sent again",
                    type="SmsClaimedElsewhere",
                    next_retry_delay=wait,
                )
            to = row.to_number or to_number  # the row's number is evidence: it stays
            if to != to_number:
                body, template = text_for(to)
            earlier_attempt, earlier_body = row.attempted_at, row.body
            row.claim_token, row.claim_until, row.attempted_at = token, claim_until, now
        try:
            # An earlier attempt may have reached the provider: asked first, with the text
            # that attempt handed over and our key (Aliyun's and Tencent's lookups use it).
            found = (
                self.gateway.find_sent(
                    to,
                    earlier_body,
                    earlier_attempt - LOOKBACK,
                    timeout_s=_time_left(deadline),
                    key=key,
                )  # fmt: skip
                if earlier_attempt is not None
                else None
            )
            if found:
                body, result = earlier_body, GatewayResult("SENT", found)
            else:
                if body != earlier_body:  # kept before it goes: the text this attempt sends
                    self._restate(key, token, body)
                result = self.gateway.send(
                    to, body, key, timeout_s=_time_left(deadline), template=template
                )
            status, sid, reason = result.status, result.provider_sid, ""
        except (PermanentSmsFailure, DeferredByProvider) as failure:
            status, sid, reason = "FAILED", None, mask_text(str(failure))[:500]
        except Exception as error:
            refused = isinstance(error, ApplicationError)
            self._note_retry(key, error, refused, earlier_attempt, release=token)
            # Temporal keeps the failure's text (history, web UI): never a full number in it.
            if isinstance(error, ApplicationError):
                raise ApplicationError(
                    mask_text(error.message),
                    *error.details,
                    type=error.type,
                    non_retryable=error.non_retryable,
                    next_retry_delay=error.next_retry_delay,
                ) from None
            raise ApplicationError(
                mask_text(f"{type(error).__name__}: {error}"), type=type(error).__name__
            ) from None
        with self.sessions.begin() as session:
            row = _locked_row(session, key)
            if row.claim_token != token:  # taken over after this attempt's claim lapsed
                log.error(
                    "staff SMS %s: the claim lapsed before its answer (%s)", mask_key(key), status
                )
                return StaffSent(row.status, earlier=row.status in DONE)
            row.status, row.provider_sid, row.reason = status, sid, reason
            row.sent_at = now if status != "FAILED" else None
            row.claim_token, row.claim_until = None, None
            apply_unmatched(session, row)
        level = logging.WARNING if status == "FAILED" else logging.INFO
        log.log(level, "staff SMS %s %s to %s %s", key, status, mask_phone(to), reason)
        count_sms(status, purpose)
        return StaffSent(status)

    def _restate(self, key: str, token: str, body: str) -> None:
        """The text this attempt is about to send, on the row it claimed (an earlier attempt,
        which the provider says did not go out, had another: the database changed since)."""
        with self.sessions.begin() as session:
            row = _locked_row(session, key)
            if row.claim_token != token:
                raise ApplicationError(
                    f"staff SMS {key}: claimed by another attempt", type="SmsClaimedElsewhere"
                )
            row.body, row.segments = body, segments(body)

    def _template(
        self, channel: Channel, purpose: str, context: dict[str, object]
    ) -> TemplateMessage | None:
        """A templated provider's registered template, its parameters from our text's values
        (the worker checked at start that every purpose has one: see sms_templates)."""
        if not channel.templated:
            return None
        try:
            return template_message(
                self.registry, self.env, channel.provider, self.language, purpose, context,
                channel.signature or "",
            )  # fmt: skip
        except KeyError as e:
            raise ApplicationError(
                f"SMS template registry: {e.args[0]}; add it to templates/sms_registry.toml",
                type="SmsTemplateMissing",
                next_retry_delay=timedelta(minutes=15),
            ) from None

    def _failed(self, req: SmsRequest, failure: PermanentSmsFailure, now: datetime) -> SmsResult:
        # The provider's text may name the number ("The 'To' number +86… is not valid"): it
        # is kept masked on the row, in the contact record and in the case's history.
        text = mask_text(str(failure))
        with self.sessions.begin() as session:
            row = _outbox_row(session, req.key)
            assert row is not None
            row.status, row.reason = "FAILED", text[:500]
            if failure.code == OPTED_OUT_CODE and row.purpose not in THIRD_PARTY_PURPOSES:
                borrower = session.get(Borrower, row.borrower_id)  # not a third party's opt-out
                assert borrower is not None
                borrower.sms_opted_out, borrower.opted_out_at = True, now
            _record_contact(session, row, now, "FAILED", f"{req.purpose}: {text}", req)
        log.warning("SMS %s failed for good: %s", mask_key(req.key), text)
        count_sms("FAILED", req.purpose)
        return SmsResult(
            req.key,
            "FAILED",
            text,
            error_code=failure.code,
            number_unusable=failure.number_unusable,
        )

    def _deferred_by_provider(
        self,
        req: SmsRequest,
        limit: DeferredByProvider,
        earlier_attempt: datetime | None,
        now: datetime,
    ) -> SmsResult:
        """The provider's own daily limit refused it: nothing went out; it waits for the next
        day's contact window like a message over our cap (not a failure of the case), or is
        dropped like one (`sms_over_cap = "DROP"`)."""
        until = cap_release(now, [now] * req.policy.sms_per_day, req.policy)
        reason = f"{PROVIDER_LIMIT_REASON} ({mask_text(str(limit))})"[:500]
        if req.policy.sms_over_cap == "DROP":
            verdict = SmsResult(req.key, "BLOCKED", reason)
        else:
            verdict = SmsResult(req.key, "DEFERRED", reason, not_before=until)
        with self.sessions.begin() as session:
            row = _outbox_row(session, req.key)
            assert row is not None
            row.status, row.reason = verdict.status, verdict.reason
            row.attempted_at = earlier_attempt
            _record_decision(session, row, req, verdict, now)
        log.info("SMS %s %s by the provider's limit", mask_key(req.key), verdict.status)
        return verdict

    def _window_closed(self, req: SmsRequest, earlier_attempt: datetime | None) -> SmsResult | None:
        """The contact window checked again just before the provider is called: a send that
        waited (the database, a backlog) past the start of quiet hours is not made; it waits
        for the next window like any message in quiet hours. None: the window is open."""
        now = activity_now()
        if not in_quiet_hours(now, req.policy):
            return None
        verdict = SmsResult(
            req.key, "DEFERRED", "quiet hours", not_before=quiet_hours_end(now, req.policy)
        )
        with self.sessions.begin() as session:
            row = _outbox_row(session, req.key)
            assert row is not None
            row.status, row.reason = verdict.status, verdict.reason
            row.attempted_at = earlier_attempt  # nothing went out in this attempt
            _record_decision(session, row, req, verdict, now)
        log.info("SMS %s deferred: the contact window closed before it went", mask_key(req.key))
        return verdict

    def _note_retry(
        self,
        key: str,
        error: Exception,
        refused: bool,
        earlier_attempt: datetime | None,
        release: str = "",
    ) -> None:
        """Each attempt's outcome stays on the outbox row, even when it will be retried.

        Nothing went out in a refused attempt (or one that failed asking the provider whether
        an earlier one went out): the row is as before it (an earlier attempt whose outcome is
        unknown still makes the retry ask the provider first). `release`: this attempt's
        claim, given up (it calls the provider no more), so the retry need not wait for it."""
        try:
            with self.sessions.begin() as session:
                row = _outbox_row(session, key)
                if row is not None and (not release or row.claim_token == release):
                    row.reason = mask_text(f"will retry: {error}")[:500]
                    if refused:
                        row.attempted_at = earlier_attempt
                    if release:
                        row.claim_token, row.claim_until = None, None
        except Exception:  # the database may be what failed; the retry is what matters
            log.exception("could not note the failed attempt of SMS %s", mask_key(key))

    def _rules(  # the debtor's
        self, session: Session, req: SmsRequest, case: Case, borrower: Borrower, now: datetime
    ) -> SmsResult | None:
        """The collection rules, checked again at the moment of sending."""
        policy: Policy = req.policy
        if req.blocked_reason:
            return SmsResult(req.key, "BLOCKED", req.blocked_reason)
        if case.stage in CLOSED_STAGES:
            return SmsResult(req.key, "BLOCKED", f"case closed ({case.stage})")
        if borrower.sms_opted_out:
            return SmsResult(req.key, "BLOCKED", "borrower opted out of SMS")
        if not borrower.phone:
            return SmsResult(req.key, "BLOCKED", "no mobile number on file")
        if in_quiet_hours(now, policy):
            return SmsResult(
                req.key, "DEFERRED", "quiet hours", not_before=quiet_hours_end(now, policy)
            )
        # Caps count every message to this borrower, whatever loan it was about, and a
        # message being sent (PENDING, attempted) as well as those sent.
        release = cap_release(now, _recent_sends(session, borrower.id, req.key, now), policy)
        if release > now:
            if policy.sms_over_cap == "DROP":
                return SmsResult(req.key, "BLOCKED", "contact cap reached")
            return SmsResult(req.key, "DEFERRED", "contact cap reached", not_before=release)
        return None


def _attempt_deadline(policy: Policy) -> float:
    """When this attempt must be done with the provider (time.monotonic()): its start-to-close
    timeout (the policy's `sms_attempt_timeout_s` outside Temporal) less a margin."""
    timeout = activity.info().start_to_close_timeout if activity.in_activity() else None
    budget = (timeout or timedelta(seconds=policy.sms_attempt_timeout_s)).total_seconds()
    return time.monotonic() + budget - min(ATTEMPT_MARGIN_S, budget / 3)


def attempt_deadline() -> float:
    """This activity attempt's deadline for the provider, for an activity that sends several
    staff texts (an alert to each supervisor): taken once at its start and given to each
    `send_staff`, so that none of them still goes out once Temporal has retried it."""
    return _attempt_deadline(Policy())


def _locked_row(session: Session, key: str) -> SmsOutbox:
    """The outbox row `key`, read afresh and locked until the transaction ends (PostgreSQL:
    FOR UPDATE; SQLite: the transaction already holds the write lock)."""
    stmt = select(SmsOutbox).where(SmsOutbox.key == key).with_for_update()
    row = session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
    assert row is not None
    return row


def _time_left(deadline: float) -> float:
    """The time this attempt may still wait for the provider; too little, and it does not
    call the provider at all (nothing goes out, and Temporal retries)."""
    left = deadline - time.monotonic()
    if left < MIN_CALL_S:
        raise ApplicationError(
            "SMS attempt out of time before the provider was called: not sent, retrying",
            type="SmsAttemptOutOfTime",
        )
    return left


def _recent_sends(session: Session, borrower_id: int, key: str, now: datetime) -> list[datetime]:
    """What the caps count: every message to the borrower, whatever loan it was about, a
    message being sent (PENDING, attempted) as well as those sent; not message `key`."""
    since = now - timedelta(days=8)
    recent = session.scalars(
        select(func.coalesce(SmsOutbox.sent_at, SmsOutbox.attempted_at)).where(
            SmsOutbox.borrower_id == borrower_id,
            or_(
                and_(SmsOutbox.status.in_(("SENT", "RECORDED")), SmsOutbox.sent_at >= since),
                and_(SmsOutbox.status == "PENDING", SmsOutbox.attempted_at >= since),
            ),
            SmsOutbox.key != key,
        )
    ).all()
    return [t for t in recent if t is not None]


# Twilio's China guideline: a number takes no third identical text within 24 hours, and five
# texts within 24 hours are held for manual review; so at most 4 and 2 identical ones per
# rolling 24 hours to a number on that route (whoever's loans, debtor or third party).
CHINA_ROUTE_WINDOW = timedelta(hours=24)
CHINA_ROUTE_MAX = 4
CHINA_ROUTE_IDENTICAL_MAX = 2


def _china_route_rules(
    session: Session, req: SmsRequest, to_number: str, body: str, now: datetime
) -> SmsResult | None:
    """The Twilio China route's per-number limits, beside our caps: every text to the number
    counts (two borrowers sharing a phone, a guarantor asked about two cases), deferred until
    the oldest message that holds it back is 24 hours old."""
    rows = session.execute(
        select(func.coalesce(SmsOutbox.sent_at, SmsOutbox.attempted_at), SmsOutbox.body).where(
            SmsOutbox.to_number == to_number,
            or_(
                and_(
                    SmsOutbox.status.in_(("SENT", "RECORDED")),
                    SmsOutbox.sent_at >= now - CHINA_ROUTE_WINDOW,
                ),
                and_(
                    SmsOutbox.status == "PENDING",
                    SmsOutbox.attempted_at >= now - CHINA_ROUTE_WINDOW,
                ),
            ),
            SmsOutbox.key != req.key,
        )
    ).all()
    recent = sorted(t for t, _ in rows if t is not None)
    same = sorted(t for t, text in rows if t is not None and text == body)
    release, why = now, ""
    if len(recent) >= CHINA_ROUTE_MAX:
        release = recent[len(recent) - CHINA_ROUTE_MAX] + CHINA_ROUTE_WINDOW
        why = f"{len(recent)} texts in 24 h"
    if len(same) >= CHINA_ROUTE_IDENTICAL_MAX:
        identical = same[len(same) - CHINA_ROUTE_IDENTICAL_MAX] + CHINA_ROUTE_WINDOW
        if identical > release:
            release, why = identical, f"{len(same)} identical texts in 24 h"
    if release <= now:
        return None
    reason = f"{CHINA_ROUTE_REASON} (Twilio China route: {why})"
    if req.policy.sms_over_cap == "DROP":
        return SmsResult(req.key, "BLOCKED", reason)
    return SmsResult(req.key, "DEFERRED", reason, not_before=release)


def _record_contact(
    session: Session,
    row: SmsOutbox,
    now: datetime,
    outcome: str,
    detail: str,
    req: SmsRequest,
    key: str = "",
    rule: str = "",
) -> None:
    """The regulator's record of a contact decision: a message sent or failed (once per
    message), or deferred or refused (once per decision, `key`), with the deciding rule and
    the rule set and policy version in force."""
    insert_ignore(
        session,
        ContactAttempt,
        dict(
            key=key or f"sms:{row.key}",
            case_id=row.case_id,
            channel="SMS",
            at=now,
            outcome=outcome,
            detail=detail[:500],
            party=req.party,
            rule=rule,
            ruleset=ruleset_label(req.policy),
        ),
        ["key"],
    )


def _record_decision(
    session: Session, row: SmsOutbox, req: SmsRequest, verdict: SmsResult, now: datetime
) -> None:
    """A deferral or refusal in the contact log, named by its rule."""
    cap = None
    if verdict.reason.startswith(CAP_REASON):
        cap = cap_rule(now, _recent_sends(session, row.borrower_id, req.key, now), req.policy)
    from_workflow = bool(req.blocked_reason) and verdict.reason == req.blocked_reason
    rule = sms_rule(verdict.reason, from_workflow, cap)
    detail = f"{req.purpose}: {verdict.reason}"
    if verdict.not_before is not None:
        detail += f" (until {verdict.not_before.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
    key = decision_key(req.key, verdict.status, verdict.not_before, rule)
    _record_contact(session, row, now, verdict.status, detail, req, key, rule)
    count_sms(verdict.status, req.purpose, rule)  # for operators: outcome and rule, no person


def _result(row: SmsOutbox) -> SmsResult:
    return SmsResult(
        row.key,
        row.status,
        row.reason,
        sent_at=row.sent_at,
        segments=row.segments,
        delivery_failure=failure_of(row),
    )


# What may be sent to a third party: texts that name neither the debtor nor the debt.
THIRD_PARTY_PURPOSES = frozenset({"third_party_request"})


def _third_party_rules(
    req: SmsRequest, case: Case, refused: str, now: datetime
) -> SmsResult | None:
    """The third-party rules, checked again at sending: a text that names no debt, the
    contact's relation and contact-lost (unrelated parties), once a week, quiet hours."""
    if req.blocked_reason:
        return SmsResult(req.key, "BLOCKED", req.blocked_reason)
    if req.purpose not in THIRD_PARTY_PURPOSES:
        return SmsResult(req.key, "BLOCKED", f"{req.purpose}: not a text for a third party")
    if case.stage in CLOSED_STAGES:
        return SmsResult(req.key, "BLOCKED", f"case closed ({case.stage})")
    if refused:
        return SmsResult(req.key, "BLOCKED", refused)
    if in_quiet_hours(now, req.policy):
        return SmsResult(
            req.key, "DEFERRED", "quiet hours", not_before=quiet_hours_end(now, req.policy)
        )
    return None
