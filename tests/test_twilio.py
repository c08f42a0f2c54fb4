"""SMS through the real twilio client: against Twilio's own contract (a Prism mock of
tests/contracts/twilio/twilio_api_v2010.json, vendored from twilio-oai) and against a local
server answering Twilio's errors.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError

from activities.sms import SmsActivities
from activities.sms_gateway import GatewayResult, PermanentSmsFailure
from activities.twilio_gateway import TwilioGateway, TwilioSettings
from db.models import Borrower, ContactAttempt, SmsOutbox
from domain.models import CloseRequest
from tests.harness import Harness, eventually, running_worker
from tests.test_activities import new_loan, sms

ROOT = Path(__file__).resolve().parent.parent
# Vendored in the repository (see its README): the tests read nothing outside the checkout.
SPEC = ROOT / "tests" / "contracts" / "twilio" / "twilio_api_v2010.json"
SPEC_SHA256 = "99cae87a6bb1725f71363364cbd30282a13140374b2d5f9bdd5bdfa5d4c8a6d7"  # d50069b
PRISM = ROOT / ".tools" / "prism" / "node_modules" / ".bin" / "prism"
ACCOUNT = "AC" + "0123456789abcdef" * 2


def test_the_contract_is_the_vendored_twilio_oai_description() -> None:
    """Twilio's description from inside the repository, byte for byte the commit its README
    names: a clone passes `make test` alone, and an edited copy cannot loosen the contract."""
    assert SPEC.resolve().is_relative_to(ROOT), SPEC
    assert SPEC.exists(), f"Twilio's OpenAPI description is missing: {SPEC}"
    assert hashlib.sha256(SPEC.read_bytes()).hexdigest() == SPEC_SHA256
    readme = (SPEC.parent / "README.md").read_text()
    assert "d50069b44ea8cd23141385bdb6db48f16ff75bb5" in readme and SPEC_SHA256 in readme
    assert "MIT License" in (SPEC.parent / "LICENSE").read_text()


@pytest.fixture(scope="module")
def prism() -> Iterator[str]:
    """Prism serves Twilio's OpenAPI description and answers 422 to any request outside it.

    It listens on a port of its own choosing (`-p 0`) and says which; the test reads it back,
    so no other process can take the port between its choice and Prism's start.
    """
    assert SPEC.exists(), f"Twilio's OpenAPI description is missing: {SPEC}"
    assert PRISM.exists(), "Prism is missing: run `make setup`"
    proc = subprocess.Popen(
        [str(PRISM), "mock", "--host", "127.0.0.1", "-p", "0", str(SPEC)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    listening: list[str] = []
    started = threading.Event()

    def read_output() -> None:  # and keep draining it: a full pipe would stall Prism
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(r"Prism is listening on (http://127\.0\.0\.1:\d+)", line)
            if found and not listening:
                listening.append(found.group(1))
                started.set()
        started.set()  # Prism exited

    threading.Thread(target=read_output, daemon=True).start()
    try:
        assert started.wait(90), "Prism did not start in 90 s"
        assert listening, f"Prism exited with {proc.wait()} before listening"
        yield listening[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def gateway(base: str, timeout: float = 10.0, **kw: str) -> TwilioGateway:
    values = dict(
        account_sid=ACCOUNT,
        auth_token="f" * 32,
        from_number="+15005550006",
        status_callback_url="https://coop.example.cn/twilio/status",
        api_base=base,
    )
    values.update(kw)
    return TwilioGateway(TwilioSettings(**values), timeout=timeout)  # type: ignore[arg-type]


def test_requests_we_send_pass_twilios_contract(prism: str) -> None:
    sent = gateway(prism).send(
        "+8613912345678", "【青溪信用社】您尾号5678的贷款已逾期。回复TD退订。", "k1"
    )
    assert sent.status == "SENT" and sent.provider_sid.startswith("SM")
    via_service = gateway(prism, from_number="", messaging_service_sid="MG" + "a" * 32)
    assert via_service.send("+8613912345678", "测试", "k2").status == "SENT"
    api_key = gateway(prism, auth_token="", api_key_sid="SK" + "b" * 32, api_key_secret="s")
    assert api_key.send("+8613912345678", "测试", "k3").status == "SENT"


def test_prism_refuses_a_request_outside_the_contract(prism: str) -> None:
    """The check bites: a malformed StatusCallback is a 422 from Prism, not a pass."""
    with pytest.raises(PermanentSmsFailure, match="422"):
        gateway(prism, status_callback_url="not a url").send("+8613912345678", "x", "k4")


def test_send_sms_activity_through_twilio_records_the_message_sid(prism: str, sessions) -> None:
    loan_no = new_loan(sessions)
    result = SmsActivities(sessions, gateway(prism)).send_sms(sms(loan_no, "t1"))
    assert result.status == "SENT"
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.status == "SENT" and row.provider_sid.startswith("SM")


class TwilioLike(BaseHTTPRequestHandler):
    """Answers Messages.json as Twilio does, from a script of (status, body[, gate]) answers.

    A message it answers 201 for is kept, and listed by GET Messages.json?To=..., as Twilio
    lists a number's messages. With a gate (a threading.Event) the answer waits until the test
    opens it: held past the client's timeout, it is a Twilio that accepted the message but
    whose answer never reached us. No real time decides anything: the test opens the gate.
    """

    script: list[tuple] = []  # empty: every message is accepted
    seen: list[dict] = []
    created: list[dict] = []
    slow_numbers: dict[str, threading.Event] = {}  # To → the gate its answers wait for

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", 0))
        form = self.rfile.read(length).decode()
        type(self).seen.append({"path": self.path, "body": form})
        status, body, *gate = type(self).script.pop(0) if type(self).script else CREATED
        fields = dict(parse_qsl(form))
        gate = gate or [type(self).slow_numbers.get(fields.get("To", ""))]
        if status == 201:
            sid = "SM" + f"{len(type(self).created) + 1:032x}"
            type(self).created.append(
                {**body, "sid": sid, "to": fields["To"], "body": fields["Body"],
                 "date_created": formatdate(usegmt=True)}
            )  # fmt: skip
            body = type(self).created[-1]
        if gate[0] is not None:
            # Bounded only so that a failed test cannot hang a server thread for ever.
            gate[0].wait(GATE_LIMIT)
        self._answer(status, body)

    def do_GET(self) -> None:  # noqa: N802
        query = dict(parse_qsl(urlsplit(self.path).query))
        type(self).seen.append({"path": self.path, "body": ""})
        listed = [m for m in reversed(type(self).created) if m["to"] == query.get("To")]
        self._answer(200, {"messages": listed, "next_page_uri": None, "page": 0})

    def _answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    def log_message(self, *args: object) -> None:
        pass


GATE_LIMIT = 120.0


def twilio_error(code: int, status: int, message: str) -> tuple[int, dict]:
    return status, {
        "code": code,
        "message": message,
        "status": status,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
    }


CREATED = (
    201,
    {
        "sid": "SM" + "c" * 32,
        "status": "queued",
        "account_sid": ACCOUNT,
        "to": "+8613912345678",
        "body": "x",
        "num_segments": "1",
    },
)


@pytest.fixture
def twilio_like() -> Iterator[str]:
    TwilioLike.script, TwilioLike.seen, TwilioLike.created = [], [], []
    TwilioLike.slow_numbers = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), TwilioLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    open_gates()
    server.shutdown()


def open_gates() -> None:
    """Let every held answer go (a test that failed while one was held)."""
    for entry in TwilioLike.script:
        if len(entry) > 2:
            entry[2].set()
    for gate in TwilioLike.slow_numbers.values():
        gate.set()


@pytest.mark.parametrize("code", [21211, 21614])
def test_unusable_numbers_are_not_retried(twilio_like: str, sessions, code: int) -> None:
    TwilioLike.script = [twilio_error(code, 400, "The 'To' number is not a valid phone number")]
    loan_no = new_loan(sessions)
    result = SmsActivities(sessions, gateway(twilio_like)).send_sms(sms(loan_no, "e1"))
    assert (result.status, result.error_code, result.number_unusable) == ("FAILED", code, True)
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.status == "FAILED" and str(code) in row.reason


def test_unsubscribed_recipient_marks_the_borrower_opted_out(twilio_like: str, sessions) -> None:
    TwilioLike.script = [twilio_error(21610, 400, "Attempt to send to unsubscribed recipient")]
    loan_no = new_loan(sessions)
    result = SmsActivities(sessions, gateway(twilio_like)).send_sms(sms(loan_no, "e2"))
    assert (result.status, result.error_code) == ("FAILED", 21610)
    with sessions() as session:
        assert session.scalar(select(Borrower.sms_opted_out)) is True


def test_busy_twilio_is_retried_and_the_message_goes_out_once(twilio_like: str, sessions) -> None:
    TwilioLike.script = [
        twilio_error(20429, 429, "Too Many Requests"),
        twilio_error(20500, 503, "Service Unavailable"),
        CREATED,
    ]
    acts = SmsActivities(sessions, gateway(twilio_like))
    loan_no = new_loan(sessions)
    for _ in range(2):  # Temporal's retries
        with pytest.raises(ApplicationError) as e:
            acts.send_sms(sms(loan_no, "r1"))
        assert e.value.type == "TwilioUnavailable" and not e.value.non_retryable
        with sessions() as session:
            assert session.scalar(select(SmsOutbox.reason)).startswith("will retry")
    assert acts.send_sms(sms(loan_no, "r1")).status == "SENT"
    assert acts.send_sms(sms(loan_no, "r1")).status == "SENT"  # a late retry sends nothing
    assert len(TwilioLike.seen) == 3  # three POSTs: refusals need no lookup at Twilio
    assert "StatusCallback=https" in TwilioLike.seen[-1]["body"]


def test_a_message_twilio_took_but_never_answered_for_is_not_sent_again(
    twilio_like: str, sessions
) -> None:
    """Timeouts: Twilio accepts, its answer is lost; the retry finds the message at Twilio."""
    answer = threading.Event()
    TwilioLike.script = [(*CREATED, answer)]  # held until the client's 0.5 s timeout is past
    acts = SmsActivities(sessions, gateway(twilio_like, timeout=0.5))
    loan_no = new_loan(sessions)
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        acts.send_sms(sms(loan_no, "t1"))
    answer.set()  # the answer goes to a client that gave up
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.status == "PENDING" and row.attempted_at is not None
    result = acts.send_sms(sms(loan_no, "t1"))  # Temporal's retry
    assert result.status == "SENT"
    posts = [s for s in TwilioLike.seen if s["body"]]
    assert len(posts) == 1 and len(TwilioLike.created) == 1  # the borrower got it once
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.provider_sid == TwilioLike.created[0]["sid"]
        assert session.scalar(select(func.count()).select_from(ContactAttempt)) == 1
    # Had Twilio not taken it, the retry sends it.
    TwilioLike.script = [twilio_error(20500, 503, "Service Unavailable"), CREATED]
    with pytest.raises(ApplicationError):
        acts.send_sms(sms(loan_no, "t2"))
    assert acts.send_sms(sms(loan_no, "t2")).status == "SENT"
    assert len(TwilioLike.created) == 2


async def test_a_slow_twilio_for_one_borrower_does_not_hold_up_the_others(
    env, sqlite_sessions, tmp_path: Path, twilio_like: str
) -> None:
    """Activities run in a thread pool: one message stuck in Twilio holds one thread.

    The stuck answer is held by a gate, not a sleep: it is still held while the others'
    notices go out, however slow the machine, and let go only when the test says so.
    """
    stuck = threading.Event()
    TwilioLike.slow_numbers = {"+8613900000001": stuck}
    async with running_worker(
        env, sqlite_sessions, tmp_path / "d", gateway=gateway(twilio_like, timeout=GATE_LIMIT)
    ) as h:
        # Its attempt may not time out while the test holds it (the others' notices first).
        held = h.policy.with_overrides({"sms_attempt_timeout_s": int(GATE_LIMIT)})
        _, slow = await h.start(held, phone="+8613900000001")
        await eventually(lambda: TwilioLike.seen, "the slow message reached Twilio")
        others = [(await h.start(phone=f"+861390000010{n}"))[1] for n in range(3)]
        for handle in others:  # their first notices go out while the slow one waits
            await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice", 60)
        assert not stuck.is_set() and (await h.status(slow)).counters.sms_sent == 0
        assert [m["to"] for m in TwilioLike.created][0] == "+8613900000001"  # it was first
        stuck.set()
        await h.until(slow, lambda s: s.counters.sms_sent == 1, "the slow one, at last", 60)
        for handle in (slow, *others):  # all closed before waiting: no time is skipped
            await handle.execute_update(
                "close_case", CloseRequest("CANCELLED", "test over", "test")
            )
        for handle in (slow, *others):
            await handle.result()
    assert len(TwilioLike.created) == 4, [(m["to"], m["body"][:30]) for m in TwilioLike.created]


def test_bad_credentials_say_so_and_retry_slowly(twilio_like: str, sessions) -> None:
    TwilioLike.script = [twilio_error(20003, 401, "Authenticate")]
    loan_no = new_loan(sessions)
    with pytest.raises(ApplicationError, match="credentials") as e:
        SmsActivities(sessions, gateway(twilio_like)).send_sms(sms(loan_no, "a1"))
    assert e.value.type == "TwilioAuthentication" and e.value.next_retry_delay.seconds == 900


class UnusableNumber:
    name = "unusable"

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        raise PermanentSmsFailure(21614, "twilio 21614: not a mobile number", number_unusable=True)

    def find_sent(self, to: str, body: str, since: object, **kw: object) -> str | None:
        return None


@pytest.fixture
async def h_unusable(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "d", gateway=UnusableNumber()) as h:
        yield h


async def test_an_undeliverable_first_notice_sends_a_collector_at_once(h_unusable: Harness) -> None:
    h = h_unusable
    spec, handle = await h.start()
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert status.counters.sms_failed == 1
    assert "could not be delivered" in status.history[-1].detail or any(
        "could not be delivered" in e.detail for e in status.history
    )
    # No contact wait was spent: the visit task is due a visit deadline after the start.
    assert status.stage_since - (await h.status(handle)).history[0].at < h.day
    await h.pay(handle, 1_000_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
