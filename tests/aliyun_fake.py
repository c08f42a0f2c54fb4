"""A local stand-in for Alibaba Cloud SMS's HTTP API (dysmsapi), for the real SDK to call.

It checks what Aliyun checks first: the request is signed (ACS3-HMAC-SHA256, recomputed here
from the request as received, with the test's AccessKey secret), and SendSms carries
PhoneNumbers, SignName, TemplateCode and TemplateParam (JSON). It delivers as Aliyun does:
【SignName】 + the registered template's text with its ${variables} filled in, and lists what
it delivered through QuerySendDetails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

from activities.aliyun_gateway import AliyunGateway, AliyunSettings
from activities.sms_templates import load_registry, registration_texts

KEY_ID, SECRET, SIGN = "LTAI5tTestKeyId", "test-secret-0123456789", "青溪信用社"
CHINA = ZoneInfo("Asia/Shanghai")


def _pe(text: str) -> str:
    return quote(text, safe="-_.~")


def signature_ok(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """'' when the request's Authorization is right for SECRET, else what is wrong."""
    auth = headers.get("authorization", "")
    found = re.fullmatch(
        r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)", auth
    )
    if not found:
        return "no ACS3-HMAC-SHA256 Authorization"
    key_id, signed, signature = found.groups()
    if key_id != KEY_ID:
        return "InvalidAccessKeyId.NotFound"
    names = signed.split(";")
    for required in ("host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-version"):
        if required not in names:
            return f"{required} not signed"
    payload_hash = hashlib.sha256(body).hexdigest()
    if headers.get("x-acs-content-sha256") != payload_hash:
        return "x-acs-content-sha256 is not the body's"
    url = urlsplit(path)
    query = sorted((_pe(k), _pe(v)) for k, v in parse_qsl(url.query, keep_blank_values=True))
    canonical = "\n".join(
        [
            method,
            url.path or "/",
            "&".join(f"{k}={v}" for k, v in query),
            "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in names),
            signed,
            payload_hash,
        ]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(SECRET.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return "" if hmac.compare_digest(expected, signature) else "SignatureDoesNotMatch"


class AliyunLike(BaseHTTPRequestHandler):
    script: list[tuple[int, dict]] = []  # answers to SendSms in turn; empty: accept
    sent: list[dict] = []  # every SendSms it accepted, with the text it delivered
    seen: list[dict] = []  # every request, its parameters
    templates: dict[str, str] = {}  # template code → registered text
    biz = 0
    hold = threading.Event()  # set: answers at once; cleared: SendSms accepts, then waits
    hold.set()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        params = dict(parse_qsl(urlsplit(self.path).query)) | dict(parse_qsl(body.decode()))
        action = headers.get("x-acs-action") or params.get("Action", "")
        cls = type(self)
        cls.seen.append({"action": action, **params})
        wrong = signature_ok("POST", self.path, headers, body)
        if wrong:
            code = wrong if wrong.startswith(("Invalid", "Signature")) else "IncompleteSignature"
            return self._answer(
                400 if "Signature" in code else 404, {"Code": code, "Message": wrong}
            )
        if action == "SendSms":
            return self._send_sms(params)
        if action == "QuerySendDetails":
            return self._query(params)
        self._answer(400, {"Code": "InvalidAction.NotFound", "Message": action})

    def _send_sms(self, p: dict[str, str]) -> None:
        cls = type(self)
        missing = [k for k in ("PhoneNumbers", "SignName", "TemplateCode") if not p.get(k)]
        if missing:
            return self._answer(400, {"Code": "MissingParameter", "Message": str(missing)})
        if cls.script:
            status, answer = cls.script.pop(0)
            return self._answer(status, {"RequestId": "R", **answer})
        text = cls.templates.get(p["TemplateCode"])
        if text is None:
            return self._answer(200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"})
        values = json.loads(p.get("TemplateParam") or "{}")
        names = set(re.findall(r"\$\{(\w+)\}", text))
        if names != set(values):
            return self._answer(
                200, {"Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": str(names)}
            )
        content = f"【{p['SignName']}】" + re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], text)
        cls.biz += 1
        biz_id = f"{cls.biz:06d}^0"
        now = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        cls.sent.append({**p, "content": content, "biz_id": biz_id, "send_date": now})
        cls.hold.wait(30)  # bounded only so that a failed test cannot hang a server thread
        self._answer(200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": "R"})

    def _query(self, p: dict[str, str]) -> None:
        day = p.get("SendDate", "")
        dtos = [
            {"PhoneNum": s["PhoneNumbers"], "Content": s["content"], "OutId": s.get("OutId"),
             "SendDate": s["send_date"], "SendStatus": 3, "TemplateCode": s["TemplateCode"]}
            for s in type(self).sent
            if s["PhoneNumbers"] == p.get("PhoneNumber")
            and s["send_date"][:10].replace("-", "") == day
        ]  # fmt: skip
        self._answer(200, {"Code": "OK", "Message": "OK", "TotalCount": len(dtos),
                           "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}})  # fmt: skip

    def _answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def aliyun_like() -> Iterator[str]:
    """The fake on a free local port, with the registry's templates registered as the
    README says (their text from `python -m activities.sms_templates aliyun zh`)."""
    registry = load_registry()
    texts = registration_texts(registry, "aliyun", "zh")
    AliyunLike.templates = {registry["aliyun"]["zh"][p]["code"]: t for p, t in texts.items()}
    AliyunLike.script, AliyunLike.sent, AliyunLike.seen, AliyunLike.biz = [], [], [], 0
    AliyunLike.hold.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), AliyunLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        AliyunLike.hold.set()
        server.shutdown()
        server.server_close()


def aliyun_gateway(endpoint: str, secret: str = SECRET, timeout: float = 5.0) -> AliyunGateway:
    return AliyunGateway(AliyunSettings(KEY_ID, secret, SIGN, endpoint, "http"), timeout)
