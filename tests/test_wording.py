"""Wording the collection guideline forbids (domain/wording.py): none in any text we publish
(every SMS template, both languages, and the agreement), a collector's notes with it flagged to
the supervisor, and no charge beyond principal, interest and penalty in a plan or agreement."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from jinja2 import DictLoader, Environment, FileSystemLoader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.agreements import AgreementActivities
from activities.cases import CaseActivities
from activities.contacts import ContactActivities
from activities.texts import TEMPLATES, environment, render_sms
from activities.wording_review import AUDIT_ACTION, review_key
from db.models import AuditEvent, Branch, Task
from db.repository import loan_by_no
from domain.models import (
    CallRecord,
    CallReport,
    ConsentChange,
    ConsentRecord,
    PlannedInstallment,
    PlanProposal,
    VisitRecord,
    VisitReport,
)
from domain.plans import PlanRejected, check_plan
from domain.policy import Policy
from domain.stages import Stage, TaskKind
from domain.wording import (
    ALLOWED,
    CLAUSE_BREAKS,
    EN,
    ZH,
    Category,
    Finding,
    forbidden_phrases,
    normalise,
)
from tests.test_activities import agreement_request, new_loan

C = Category
PARAMS = {
    "cooperative": "青溪信用社",
    "loan_tail": "5678",
    "amount_fen": "1234567",
    "days_past_due": "45",
    # Shown in a text, never compared with today.
    "due_date": (datetime.now(UTC).date() + timedelta(days=11)).isoformat(),
}


def cats(text: str) -> set[Category]:
    return {f.category for f in forbidden_phrases(text)}


# ---------------------------------------------------------------- the rule, category by category


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("我是县公安局的，你的事已经立案了", C.IMPERSONATION),
        ("法院马上给你寄传票", C.IMPERSONATION),
        ("检察院已经介入", C.IMPERSONATION),
        ("我们的律师函明天寄到你家", C.IMPERSONATION),
        ("This is the police about your loan", C.IMPERSONATION),
        ("A lawyer's letter follows", C.IMPERSONATION),
        ("再不还就把你的事曝光", C.EXPOSURE),
        ("我们有你的通讯录", C.EXPOSURE),
        ("欠款告示张贴在村口", C.EXPOSURE),
        ("照片发到群里公开你的身份", C.EXPOSURE),
        ("We will expose you on social media", C.EXPOSURE),
        ("再不还钱后果自负", C.THREAT),
        ("明天叫人上门闹", C.THREAT),
        ("再不还就去你家闹", C.THREAT),
        ("小心打断你的腿", C.THREAT),
        ("不还就让你坐牢", C.THREAT),
        ("你这是诈骗罪，要拘留的", C.THREAT),
        ("我们认识黑社会", C.THREAT),
        ("你这个老赖", C.THREAT),
        ("我们马上起诉你", C.THREAT),
        ("Pay today or else you go to jail", C.THREAT),
        ("你已经上了征信黑名单", C.FALSE_CONSEQUENCE),
        ("逾期要全额罚款", C.FALSE_CONSEQUENCE),
        ("以后孩子不能上学", C.FALSE_CONSEQUENCE),
        ("You are on our blacklist", C.FALSE_CONSEQUENCE),
        ("另收手续费200元", C.EXTRA_FEE),
        ("上门费和催收费由你承担", C.EXTRA_FEE),
        ("需要交服务费", C.EXTRA_FEE),
        ("A collection fee of 50 yuan applies", C.EXTRA_FEE),
        ("去借钱还给我们", C.BORROW_TO_REPAY),
        ("可以申请网贷先还上", C.BORROW_TO_REPAY),
        ("信用卡套现也行", C.BORROW_TO_REPAY),
        ("Borrow money to repay us", C.BORROW_TO_REPAY),
        ("Take an online loan", C.BORROW_TO_REPAY),
        ("不还就通知你家人", C.THIRD_PARTY_PRESSURE),
        ("我们会找你单位领导", C.THIRD_PARTY_PRESSURE),
        ("让你的亲友都知道", C.THIRD_PARTY_PRESSURE),
        ("告诉他再不还就通知他单位", C.THIRD_PARTY_PRESSURE),  # a collector's notes
        ("We will tell your employer", C.THIRD_PARTY_PRESSURE),
    ],
)
def test_each_category_is_found(text: str, category: Category) -> None:
    assert category in cats(text), forbidden_phrases(text)


def test_every_category_has_chinese_and_english_patterns() -> None:
    assert set(ZH) == set(EN) == set(Category)
    assert all(ZH[c] and EN[c] for c in Category)


@pytest.mark.parametrize(
    "text",
    [
        "您尾号5678的贷款已逾期45天，应还12,345.67元",
        "尚欠本金、尚欠利息、罚息",  # 罚息 (penalty interest) is lawful, 罚款 (a fine) is not
        "借款人工作单位为县砖厂，在村里务工",  # 单位 as an address, not a threat
        "打电话给借款人，约定下周上门拜访",  # 打 as in a call
        "我们会转告你的意见",
        "如需还款或咨询，请联系您的信用社网点",
        "甲方有权就全部欠款依法提起诉讼或申请强制执行。",  # the agreement, article 3
        "甲方工作人员在催收过程中不得采用威胁、恐吓、骚扰等方式",  # the agreement, article 5
        "乙方因家庭变故确实无法按期还款的，有权申请调整还款计划",
        "Your loan officer will visit; the penalty is part of the debt. Reply STOP to opt out.",
    ],
)
def test_our_lawful_wording_is_not_flagged(text: str) -> None:
    assert forbidden_phrases(text) == []


def test_the_allow_list_covers_the_phrase_only() -> None:
    """A lawful statement of the right to sue does not make a threat beside it lawful."""
    assert cats("依法提起诉讼。明天法院来人，马上起诉你") == {C.IMPERSONATION, C.THREAT}
    assert cats("强制执行你的房子") == {C.THREAT}
    assert cats("我们不得采用威胁、恐吓、骚扰等方式，但你后果自负") == {C.THREAT}


ARTICLE_3 = "甲方有权就全部欠款依法提起诉讼或申请强制执行"
ARTICLE_5 = "甲方工作人员在催收过程中不得采用威胁、恐吓、骚扰等方式"


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        # the allow-listed words in a sentence of their own: checked like any words
        ("我们明天就申请强制执行你的房子", "强制执行"),
        ("明天马上依法提起诉讼", "明天马上依法提起诉讼"),
        ("申请强制执行", "强制执行"),
        ("再不还，三天内依法提起诉讼", "三天内依法提起诉讼"),
        ("我们随时可以起诉", "随时可以起诉"),
        # an allowed clause that does not stand whole is not the clause
        (ARTICLE_3 + "你的房子", "强制执行"),
        ("明天" + ARTICLE_3, "强制执行"),
        ("我们" + ARTICLE_5[6:] + "，但你后果自负", "威胁"),
    ],
)
def test_the_allow_list_covers_the_agreements_whole_clauses_only(text: str, phrase: str) -> None:
    assert C.THREAT in cats(text)
    assert Finding(C.THREAT, phrase) in forbidden_phrases(text), forbidden_phrases(text)


@pytest.mark.parametrize(
    "text",
    [
        ARTICLE_3,
        f"重新协商不成的，{ARTICLE_3}。",
        f"重新协商不成的，\n  {ARTICLE_3[:9]}\n  {ARTICLE_3[9:]}。",  # a wrapped line
        f"{ARTICLE_5}，不得向与欠款无关的第三人透露乙方信息。",
        f"“{ARTICLE_3}”",
        "借款人说明天要去县里诉讼服务中心咨询",
    ],
)
def test_an_allowed_clause_standing_whole_is_clean(text: str) -> None:
    assert forbidden_phrases(text) == []


def test_a_threat_beside_an_allowed_clause_still_counts() -> None:
    assert cats(f"{ARTICLE_3}，明天马上起诉你") == {C.THREAT}
    assert [f.phrase for f in forbidden_phrases(f"{ARTICLE_3}。明天就强制执行")] == ["强制执行"]


def test_every_allowed_clause_is_a_whole_clause_of_the_agreement() -> None:
    source = (TEMPLATES / "agreement" / "agreement.html.j2").read_text(encoding="utf-8")
    clauses = set(re.split(rf"[{CLAUSE_BREAKS}]+", normalise(source)))
    assert {normalise(c) for c in ALLOWED} <= clauses
    assert set(ALLOWED) == {ARTICLE_3, ARTICLE_5}


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("ＰＯＬＩＣＥ", "police"),  # full-width letters
        ("法　院", "法院"),  # an ideographic space
        ("法 \n 院", "法院"),  # spaces and a line break
        ("曝\u200b光", "曝光"),  # a zero-width space
        ("黑 名 单", "黑名单"),
        ("Lawyer’s   Letter", "lawyer’s letter"),
        ("手续费１００元", "手续费"),
    ],
)
def test_text_is_normalised_before_matching(text: str, phrase: str) -> None:
    assert phrase in [f.phrase for f in forbidden_phrases(text)]


def test_normalise() -> None:
    assert normalise("  ＡＢＣ　１２３\t x\u200by ") == "abc 123 xy"
    assert forbidden_phrases("") == []


def test_findings_name_category_and_phrase_once_each() -> None:
    assert forbidden_phrases("通知你家人，通知你家人，后果自负") == [
        Finding(C.THREAT, "后果自负"),
        Finding(C.THIRD_PARTY_PRESSURE, "通知你家人"),
    ]


# ---------------------------------------------------------------- the texts we publish


def sms_findings(env: Environment) -> dict[str, list[Finding]]:
    """Every SMS template the environment holds, rendered with sample parameters and checked."""
    found: dict[str, list[Finding]] = {}
    for name in env.list_templates(filter_func=lambda n: n.startswith("sms/")):
        _, language, file = name.split("/")
        text = render_sms(env, language, file.removesuffix(".txt.j2"), **PARAMS)
        if findings := forbidden_phrases(text):
            found[name] = findings
    return found


def test_every_sms_template_in_both_languages_is_clean() -> None:
    env = environment(autoescape=False)
    names = env.list_templates(filter_func=lambda n: n.startswith("sms/"))
    on_disk = sorted(str(p.relative_to(TEMPLATES)) for p in (TEMPLATES / "sms").rglob("*.j2"))
    assert sorted(names) == on_disk and len(on_disk) >= 16
    assert {n.split("/")[1] for n in names} == {"zh", "en"}
    assert sms_findings(env) == {}


def test_a_template_with_a_forbidden_word_fails_the_check(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES / "sms", tmp_path / "sms")
    (tmp_path / "sms" / "zh" / "final_warning.txt.j2").write_text(
        "【{{ cooperative }}】您尾号{{ loan_tail }}的贷款再不还，我们将通知您的家人，后果自负。"
        "回复TD退订。",
        encoding="utf-8",
    )
    (tmp_path / "sms" / "en" / "final_warning.txt.j2").write_text(
        "[{{ cooperative }}] A visit fee of 50 yuan is added. Reply STOP to opt out.",
        encoding="utf-8",
    )
    env = environment(autoescape=False)
    env.loader = FileSystemLoader(tmp_path)
    found = sms_findings(env)
    assert sorted(found) == ["sms/en/final_warning.txt.j2", "sms/zh/final_warning.txt.j2"]
    assert {f.category for f in found["sms/zh/final_warning.txt.j2"]} == {
        C.THREAT,
        C.THIRD_PARTY_PRESSURE,
    }
    assert [f.category for f in found["sms/en/final_warning.txt.j2"]] == [C.EXTRA_FEE]


class _Text(HTMLParser):
    """The words a reader sees: everything but <style> (and the page footer's CSS)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


class _FirstTable(HTMLParser):
    """The rows of the first <table>: each a list of (tag, text) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self._tables = 0
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self._tables += 1
        elif self._tables == 1 and tag == "tr":
            self.rows.append([])
        elif self._tables == 1 and tag in ("th", "td"):
            self._cell = tag
            self.rows[-1].append((tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._tables == 1 and self._cell and self.rows:
            tag, text = self.rows[-1][-1]
            self.rows[-1][-1] = (tag, text + data.strip())


class _NoPdf:
    def render(self, html: str) -> bytes:
        raise AssertionError("only the HTML is looked at here")


def agreement_html(sessions: sessionmaker[Session], tmp_path: Path, source: str = "") -> str:
    """The agreement as `render_agreement` renders it; `source` replaces the template."""
    loan_no = new_loan(sessions, name="李秀英")
    acts = AgreementActivities(sessions, tmp_path, _NoPdf())  # type: ignore[arg-type]
    if source:
        acts.env.loader = DictLoader({"agreement/agreement.html.j2": source})
    with sessions() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        branch = session.get(Branch, loan.branch_code)
        return acts.render_html(agreement_request(loan_no), loan, branch, 1)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


def test_the_agreement_is_clean(sqlite_sessions, tmp_path: Path) -> None:
    text = visible_text(agreement_html(sqlite_sessions, tmp_path))
    assert "依法提起诉讼" in text and "第五条" in text  # the allow-listed articles are there
    assert forbidden_phrases(text) == []


# ---------------------------------------------------------------- no charge beyond the debt

# The debt table's lines, in order, and what each is: nothing else may be charged.
DEBT_LINES = {
    "借款合同号": "loan number",
    "原借款金额": "amount lent (for reference)",
    "尚欠本金": "principal",
    "尚欠利息": "interest",
    "罚息": "penalty",
    "欠款合计": "debt = principal + interest + penalty",
    "本协议签订前已还": "paid",
    "本协议应还金额": "due = debt - paid",
}


def debt_table(html: str) -> dict[str, int | None]:
    """The first table's lines: label -> amount in fen (None where the line is no amount)."""
    parser = _FirstTable()
    parser.feed(html)
    lines: dict[str, int | None] = {}
    for row in parser.rows:
        label = "".join(text for tag, text in row if tag == "th")
        amount = re.fullmatch(r"([\d,]+)\.(\d\d)\s*元", row[1][1]) if len(row) > 1 else None
        lines[label] = int(amount[1].replace(",", "")) * 100 + int(amount[2]) if amount else None
    return lines


def test_the_agreement_charges_principal_interest_and_penalty_only(
    sqlite_sessions, tmp_path: Path
) -> None:
    html = agreement_html(sqlite_sessions, tmp_path)
    lines = debt_table(html)
    assert list(lines) == list(DEBT_LINES)
    assert lines["尚欠本金"] + lines["尚欠利息"] + lines["罚息"] == lines["欠款合计"]  # type: ignore[operator]
    due = lines["欠款合计"] - lines["本协议签订前已还"]  # type: ignore[operator]
    assert lines["本协议应还金额"] == due == agreement_request("x").plan.total_fen
    assert (lines["尚欠本金"], lines["尚欠利息"], lines["罚息"]) == (900_000, 80_000, 20_000)


def test_an_agreement_with_a_fee_line_fails_both_checks(sqlite_sessions, tmp_path: Path) -> None:
    source = (TEMPLATES / "agreement" / "agreement.html.j2").read_text(encoding="utf-8")
    fee_row = '<tr><th>上门服务费</th><td class="amount">50.00 元</td><td></td></tr>\n'
    marker = "<tr><th>欠款合计</th>"
    assert source.count(marker) == 1
    html = agreement_html(sqlite_sessions, tmp_path, source.replace(marker, fee_row + marker))
    assert "上门服务费" in debt_table(html) and list(debt_table(html)) != list(DEBT_LINES)
    assert [f.category for f in forbidden_phrases(visible_text(html))] == [C.EXTRA_FEE]


def test_a_plan_with_an_added_fee_is_refused_naming_the_field() -> None:
    now = datetime.now(UTC)
    outstanding = 1_000_000
    fee = 5_000  # a 50-yuan "visit fee" added to the last installment

    def plan(*amounts: int) -> PlanProposal:
        return PlanProposal(
            [PlannedInstallment(now + timedelta(days=30 * n), a) for n, a in enumerate(amounts, 1)],
            "QX01-C01",
        )

    check_plan(plan(500_000, 500_000), outstanding, Policy(), now)  # the debt exactly: accepted
    with pytest.raises(PlanRejected, match=r"^installments: the plan totals 10,050\.00 yuan but"):
        check_plan(plan(500_000, 500_000 + fee), outstanding, Policy(), now)
    with pytest.raises(PlanRejected, match=r"^installments: "):
        check_plan(plan(500_000, 500_000, fee), outstanding, Policy(), now)


# ---------------------------------------------------------------- collectors' notes


def review_tasks(sessions: sessionmaker[Session]) -> list[Task]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Task).where(Task.kind == TaskKind.REVIEW_WORDING.value).order_by(Task.key)
            )
        )


def flagged_events(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)))


def test_visit_notes_with_forbidden_wording_are_a_task_for_the_supervisor(sessions) -> None:
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    now = datetime.now(UTC)
    clean = VisitReport("MET", ["QX01-C01"], now, "借款人在村里务工，工作单位为县砖厂，已逾期")
    acts.record_visit(VisitRecord(loan_no, 1, clean, Stage.FIELD_VISIT))
    assert review_tasks(sessions) == [] and flagged_events(sessions) == []

    notes = "借款人拒绝还款。已告知再不还就通知他单位领导，后果自负。"
    bad = VisitReport("REFUSED", ["QX01-C01", "QX01-C02"], now, notes, reported_by="QX01-C02")
    record = VisitRecord(loan_no, 2, bad, Stage.FIELD_VISIT, generation="g1")
    acts.record_visit(record)
    acts.record_visit(record)  # a retried activity: still one task, one audit event
    [task] = review_tasks(sessions)
    assert task.key == f"{loan_no}:g1:wording-visit:2" and task.status == "OPEN"
    assert task.assignees == "supervisor:QX01"
    assert "visit 2 notes by QX01-C02" in task.detail
    assert "威胁恐吓侮辱" in task.detail and "向第三方施压" in task.detail
    assert "借款人拒绝还款" not in task.detail  # the notes themselves stay on the visit
    [event] = flagged_events(sessions)
    assert event.loan_no == loan_no and event.username == "system"
    assert "THREAT" in event.detail and "THIRD_PARTY_PRESSURE" in event.detail


class _StubPdf:
    def render(self, html: str) -> bytes:
        return b"%PDF-1.7 " + html.encode()  # the notes check needs no real PDF


def test_plan_notes_with_forbidden_wording_are_flagged_once(sessions, tmp_path: Path) -> None:
    """However the plan was proposed (page, CLI, a client of its own), its notes reach the
    database when its agreement is rendered."""
    loan_no = new_loan(sessions)
    acts = AgreementActivities(sessions, tmp_path, _StubPdf())  # type: ignore[arg-type]
    first = agreement_request(loan_no)
    first.generation = "g1"
    first.plan.notes = "首付后分期，另收上门费200元"
    acts.render_agreement(first)
    acts.render_agreement(first)  # a retried activity
    second = agreement_request(loan_no, 2, (400_000, 600_000))
    second.plan.notes = "首付后分期"
    acts.render_agreement(second)
    [task] = review_tasks(sessions)  # plan 1 once; plan 2's notes are clean
    assert task.key == f"{loan_no}:g1:wording-plan:1"
    assert task.assignees == "supervisor:QX01" and "plan 1 notes by QX01-C01" in task.detail
    assert "额外收费" in task.detail and "上门费" in task.detail
    assert len(flagged_events(sessions)) == 1


def test_call_and_consent_notes_with_forbidden_wording_are_flagged_once(sessions) -> None:
    loan_no = new_loan(sessions)
    acts = ContactActivities(sessions)
    # Yesterday at 10:00 on the borrower's clock: inside the call window, never a fixed date.
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)
    at = datetime.combine(day, time(10), ZoneInfo("Asia/Shanghai"))
    threat = CallReport("ANSWERED", "QX01-C01", at, notes="说了再不还就上你家闹，让你坐牢")
    call = CallRecord(loan_no, f"{loan_no}:call:1", threat, Policy())
    acts.record_call(call)
    acts.record_call(call)  # a retry
    clean = CallReport("ANSWERED", "QX01-C01", at + timedelta(hours=1), notes="约定月底还款")
    acts.record_call(CallRecord(loan_no, f"{loan_no}:call:2", clean, Policy()))
    notes = "同意晚上联系，否则通知单位"
    consent = ConsentChange("NIGHT_CONTACT", True, "VISIT", "QX01-C02", at, notes)
    acts.record_consent(ConsentRecord(loan_no, f"{loan_no}:consent:1", consent))
    acts.record_consent(ConsentRecord(loan_no, f"{loan_no}:consent:1", consent))
    tasks = {t.key: t for t in review_tasks(sessions)}
    assert sorted(tasks) == [f"wording:{loan_no}:call:1", f"wording:{loan_no}:consent:1"]
    call_task = tasks[f"wording:{loan_no}:call:1"]
    assert "call notes (borrower) by QX01-C01" in call_task.detail
    assert "威胁恐吓侮辱" in call_task.detail and call_task.assignees == "supervisor:QX01"
    assert "向第三方施压" in tasks[f"wording:{loan_no}:consent:1"].detail
    assert len(flagged_events(sessions)) == 2
    assert review_key("x" * 200).startswith("wording:") and len(review_key("x" * 200)) <= 120
