"""A local stand-in for Tencent Cloud SMS's HTTP API (API 2021-01-11), for the real SDK.

It recomputes the request's TC3-HMAC-SHA256 signature with the test's SecretKey, checks
X-TC-Action SendSms, the SdkAppId, the signature (SignName), the TemplateId and that
TemplateParamSet fills the registered template's {1}, {2}, …; it delivers 【SignName】 + the
filled-in template, as Tencent does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from activities.sms_templates import load_registry, registration_texts
from activities.tencent_gateway import TencentGateway, TencentSettings

SECRET_ID, SECRET_KEY, APP_ID, SIGN = (
    "AKIDtest0123",
    "tencent-secret-key",
    "1400000001",
    "青溪信用社",
)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature_problem(headers: dict[str, str], body: bytes) -> str:
    """'' when the Authorization is right for SECRET_KEY, else Tencent's error code."""
    found = re.fullmatch(
        r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d\d-\d\d)/(\w+)/tc3_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)",
        headers.get("authorization", ""),
    )
    if not found:
        return "AuthFailure.SignatureFailure"
    secret_id, date, service, signed, signature = found.groups()
    if secret_id != SECRET_ID:
        return "AuthFailure.SecretIdNotFound"
    timestamp = headers.get("x-tc-timestamp", "")
    if datetime.fromtimestamp(int(timestamp or 0), UTC).strftime("%Y-%m-%d") != date:
        return "AuthFailure.SignatureFailure"
    names = signed.split(";")
    canonical = "\n".join(
        ["POST", "/", "", "".join(f"{n}:{headers.get(n, '')}\n" for n in names), signed,
         hashlib.sha256(body).hexdigest()]
    )  # fmt: skip
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(("TC3" + SECRET_KEY).encode(), date), service), "tc3_request")
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return "" if hmac.compare_digest(expected, signature) else "AuthFailure.SignatureFailure"


class TencentLike(BaseHTTPRequestHandler):
    script: list[tuple[str, str]] = []  # (where: "api" or "number", code) answers in turn
    sent: list[dict] = []
    seen: list[dict] = []
    templates: dict[str, str] = {}
    serial = 0
    hold = threading.Event()  # set: answers at once; cleared: SendSms accepts, then waits
    hold.set()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        params = json.loads(body or b"{}")
        cls = type(self)
        cls.seen.append({"action": headers.get("x-tc-action"), **params})
        if problem := signature_problem(headers, body):
            return self._error(problem)
        action = headers.get("x-tc-action")
        if action not in ("SendSms", "PullSmsSendStatusByPhoneNumber"):
            return self._error("InvalidAction")
        if params.get("SmsSdkAppId") != APP_ID:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail")
        if action == "PullSmsSendStatusByPhoneNumber":
            return self._pull(params)
        if cls.script:
            where, code = cls.script.pop(0)
            if where == "api":
                return self._error(code)
            return self._status(params, code, "")
        text = cls.templates.get(params.get("TemplateId", ""))
        values = params.get("TemplateParamSet") or []
        if text is None:
            return self._status(params, "FailedOperation.TemplateIncorrectOrUnapproved", "")
        if len(set(re.findall(r"\{(\d+)\}", text))) != len(values):
            return self._status(
                params, "FailedOperation.TemplateParamSetNotMatchApprovedTemplate", ""
            )
        content = f"【{params['SignName']}】" + re.sub(
            r"\{(\d+)\}", lambda m: values[int(m[1]) - 1], text
        )
        cls.serial += 1
        serial = f"2433:{cls.serial:020d}"
        cls.sent.append({**params, "content": content, "serial": serial, "at": time.time()})
        cls.hold.wait(30)  # bounded only so that a failed test cannot hang a server thread
        self._status(params, "Ok", serial)

    def _pull(self, p: dict) -> None:
        """The status reports of the number's texts in [BeginTime, EndTime] (here at once:
        Tencent has them once the operator reports)."""
        found = [
            {"UserReceiveTime": None, "CountryCode": "86",
             "SubscriberNumber": s["PhoneNumberSet"][0][3:],
             "PhoneNumber": s["PhoneNumberSet"][0], "SerialNo": s["serial"],
             "ReportStatus": "SUCCESS", "Description": "DELIVRD",
             "SessionContext": s.get("SessionContext", "")}
            for s in type(self).sent
            if s["PhoneNumberSet"][0] == p.get("PhoneNumber")
            and int(p.get("BeginTime", 0)) <= s["at"] <= int(p.get("EndTime", 0)) + 1
        ][int(p.get("Offset", 0)):][: int(p.get("Limit", 100))]  # fmt: skip
        self._answer({"PullSmsSendStatusSet": found, "RequestId": "r"})

    def _status(self, params: dict, code: str, serial: str) -> None:
        phone = (params.get("PhoneNumberSet") or [""])[0]
        self._answer({"SendStatusSet": [{"SerialNo": serial, "PhoneNumber": phone, "Fee": 1,
                      "SessionContext": params.get("SessionContext", ""), "Code": code,
                      "Message": code, "IsoCode": "CN"}], "RequestId": "r"})  # fmt: skip

    def _error(self, code: str) -> None:
        self._answer({"Error": {"Code": code, "Message": code}, "RequestId": "r"})

    def _answer(self, response: dict) -> None:
        payload = json.dumps({"Response": response}, ensure_ascii=False).encode()
        self.send_response(200)  # Tencent answers 200, errors in Response.Error
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def tencent_like() -> Iterator[str]:
    registry = load_registry()
    texts = registration_texts(registry, "tencent", "zh")
    TencentLike.templates = {registry["tencent"]["zh"][p]["code"]: t for p, t in texts.items()}
    TencentLike.script, TencentLike.sent, TencentLike.seen, TencentLike.serial = [], [], [], 0
    TencentLike.hold.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), TencentLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        TencentLike.hold.set()
        server.shutdown()
        server.server_close()


def tencent_gateway(
    endpoint: str, secret_key: str = SECRET_KEY, timeout: float = 5.0
) -> TencentGateway:
    settings = TencentSettings(
        SECRET_ID, secret_key, APP_ID, SIGN, endpoint=endpoint, scheme="http"
    )
    return TencentGateway(settings, timeout=timeout)
