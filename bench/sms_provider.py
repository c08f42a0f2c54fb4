"""A Twilio-like SMS provider with a rate limit, for the morning-wave benchmark and its tests.

It answers the Messages create POST the real twilio client sends (TWILIO_API_BASE pointed at
it) with 201 and a Twilio-shaped message while a token bucket of `rate` a second (holding at
most `burst`, one second's worth by default) has a token, and with 429 (Twilio error 20429)
when it has none, as Twilio answers a sender over its rate. It lists a number's messages (GET
Messages.json?To=…), as Twilio does, for the retry that asks whether a message went out. It
counts 201s and 429s and records when each message was accepted, to whom and with what text.
stdlib only (http.server in a thread): nothing to install.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

ACCOUNT = "AC" + "0123456789abcdef" * 2


@dataclass(frozen=True)
class Accepted:
    at: float  # time.time() when the provider took it
    to: str
    body: str
    sid: str


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `burst` kept; take() is False when none is left."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ProviderState:
    """What the provider saw; every field guarded by `lock`."""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.lock = threading.Lock()
        self.bucket = TokenBucket(rate, burst or max(1.0, rate)) if rate else None
        self.accepted: list[Accepted] = []
        self.refused = 0  # 429s
        self.refused_at: list[float] = []
        self.refuse_next = 0  # tests: the next this many sends get a 429 whatever the bucket

    def reset(self) -> None:
        with self.lock:
            self.accepted.clear()
            self.refused = 0
            self.refused_at.clear()


def _handler(state: ProviderState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            fields = dict(parse_qsl(self.rfile.read(length).decode()))
            if not urlsplit(self.path).path.endswith("/Messages.json"):
                self._answer(404, {"code": 20404, "message": "Not Found", "status": 404})
                return
            with state.lock:
                now = time.time()
                over = state.bucket is not None and not state.bucket.take(time.monotonic())
                if state.refuse_next > 0 or over:
                    state.refuse_next = max(0, state.refuse_next - 1)
                    state.refused += 1
                    state.refused_at.append(now)
                    accepted = None
                else:
                    sid = "SM" + f"{len(state.accepted) + 1:032x}"
                    accepted = Accepted(now, fields.get("To", ""), fields.get("Body", ""), sid)
                    state.accepted.append(accepted)
            if accepted is None:
                self._answer(
                    429,
                    {
                        "code": 20429,
                        "message": "Too Many Requests",
                        "status": 429,
                        "more_info": "https://www.twilio.com/docs/errors/20429",
                    },
                )
                return
            self._answer(201, _message(accepted, fields))

        def do_GET(self) -> None:  # noqa: N802
            query = dict(parse_qsl(urlsplit(self.path).query))
            with state.lock:
                listed = [m for m in reversed(state.accepted) if m.to == query.get("To")]
            page = {"messages": [_message(m, {}) for m in listed[:20]], "next_page_uri": None}
            self._answer(200, {**page, "page": 0, "page_size": 20})

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

    return Handler


def _message(m: Accepted, fields: dict[str, str]) -> dict[str, object]:
    return {
        "sid": m.sid,
        "account_sid": ACCOUNT,
        "status": "queued",
        "to": m.to,
        "from": fields.get("From"),
        "messaging_service_sid": fields.get("MessagingServiceSid"),
        "body": m.body,
        "num_segments": "1",
        "direction": "outbound-api",
        "date_created": formatdate(m.at, usegmt=True),
        "date_updated": formatdate(m.at, usegmt=True),
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{m.sid}.json",
    }


@contextmanager
def rate_limited_provider(
    rate: float | None, burst: float | None = None
) -> Iterator[tuple[str, ProviderState]]:
    """A running provider on a free loopback port: (its base URL, what it saw)."""
    state = ProviderState(rate, burst)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def twilio_env(base_url: str, rate: float | None) -> dict[str, str]:
    """A worker's environment for sending through this provider (the real twilio client
    with TWILIO_API_BASE), at most `rate` a second (SMS_RATE_PER_SECOND)."""
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": "bench-token",
        "TWILIO_FROM": "+15005550006",
        "TWILIO_STATUS_CALLBACK_URL": "https://collection.example/twilio/status",
        "TWILIO_API_BASE": base_url,
        "SMS_PROVIDER_CN": "twilio",
        "SMS_PROVIDER_INTL": "twilio",
    }
    if rate is not None:
        env["SMS_RATE_PER_SECOND"] = f"{rate:g}"
    return env
