"""Words a collection text must not use (中国银行业协会 2026 催收工作指引), and the check for them.

The guideline forbids, in anything said or written to a debtor: impersonating state or judicial
bodies, exposing the debtor or their private information, intimidation, insults, threats and
violence, fake blacklists and exaggerated consequences, charges beyond principal, interest and
penalty interest, pushing the debtor to borrow elsewhere to repay, and pressure through family,
employer or neighbours. Each group below is one category; `forbidden_phrases(text)` names every
category a text falls into and the phrase that put it there.

Where it is enforced: every SMS template (both languages) and the agreement template are
rendered and checked by `tests/test_wording.py`, so a text with such a word cannot be released;
a collector's free-text notes (visits, calls, consents, plans) are checked when stored, and a
match is a task for the branch's supervisor (`activities/wording_review.py`), not a refusal:
notes describe what happened (a borrower's own threat too), and a person decides.

Matching: the text is normalised first (NFKC: full-width letters, digits and spaces become
half-width; case folded; zero-width characters dropped). Chinese patterns are matched with all
whitespace removed ("法 院" is "法院"), English ones on words with single spaces between them.
Patterns are deliberately narrow where a word is everyday Chinese: 打 alone is 打电话 (a call),
单位 alone is 工作单位 (an address), 罚息 (penalty interest) is lawful where 罚款 (a fine) is not,
逾期 (overdue) is a fact; pressure through third parties is a verb aimed at them (通知家人,
找你单位), not the mere word.

The allow-list (`ALLOWED`) holds whole clauses of our own lawful texts that contain a forbidden
word, exactly as templates/agreement/agreement.html.j2 has them (normalised; a clause runs
from one punctuation mark, space or line break to the next). A clause is blanked out before
matching only where it stands whole: the same words in any other sentence are checked like
any words, and so is everything beside the clause.
- 甲方有权就全部欠款依法提起诉讼或申请强制执行: the agreement's article 3 states the creditor's
  lawful right to sue or apply to a court for enforcement once renegotiation fails. That
  statement is allowed; 申请强制执行你的房子, 明天马上依法提起诉讼, 马上起诉你 are threats.
- 甲方工作人员在催收过程中不得采用威胁、恐吓、骚扰等方式: the agreement's article 5 names the
  prohibition itself.
Add a clause only for a text we publish, with the reason, and a test that it stays clean
(`tests/test_wording.py` checks that each is a whole clause of the agreement).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    IMPERSONATION = "IMPERSONATION"  # 冒充公检法、律师
    EXPOSURE = "EXPOSURE"  # 曝光、泄露隐私、爆通讯录
    THREAT = "THREAT"  # 威胁、恐吓、侮辱、暴力
    FALSE_CONSEQUENCE = "FALSE_CONSEQUENCE"  # 虚构黑名单、夸大后果或债务
    EXTRA_FEE = "EXTRA_FEE"  # 本金、利息、罚息以外的费用
    BORROW_TO_REPAY = "BORROW_TO_REPAY"  # 诱导借新债还旧债
    THIRD_PARTY_PRESSURE = "THIRD_PARTY_PRESSURE"  # 向家人、单位、亲友施压


# In words a supervisor reads on a task.
LABELS: dict[Category, str] = {
    Category.IMPERSONATION: "冒充公检法/律师 (impersonating police, courts or lawyers)",
    Category.EXPOSURE: "曝光隐私 (exposure of private information)",
    Category.THREAT: "威胁恐吓侮辱 (threats, intimidation, insults, violence)",
    Category.FALSE_CONSEQUENCE: "虚构后果 (fake blacklists, exaggerated consequences or debt)",
    Category.EXTRA_FEE: "额外收费 (charges beyond principal, interest and penalty)",
    Category.BORROW_TO_REPAY: "诱导借贷还款 (pushing to borrow to repay)",
    Category.THIRD_PARTY_PRESSURE: "向第三方施压 (pressure through family, employer, others)",
}

# Someone the debtor knows: telling them is pressure (the rule book decides lawful contact of
# guarantors and co-borrowers; a text to the debtor never threatens to tell anyone).
_PEOPLE = (
    "家人|家属|家里人|父母|爸妈|老婆|老公|配偶|子女|孩子|小孩|亲友|亲戚|亲属|朋友|同事|领导|"
    "老板|单位|学校|村委会?|村干部|邻居|街坊"
)
_TELL = "通知|告诉|告知|联系|找|打电话给|打给|闹到|发给|曝光给"
# Whose: the debtor addressed (你) or, in a collector's notes, spoken of (他, 其, 借款人).
_WHOSE = "(你|您|他|她|其|借款人)?的?"

# fmt: off
# Chinese patterns (regular expressions on the normalised text without whitespace).
ZH: dict[Category, tuple[str, ...]] = {
    Category.IMPERSONATION: (
        "公安", "警察", "警方", "民警", "网警", "经侦", "派出所", "法院", "法官", "法庭",
        "传票", "执行局", "检察", "司法", "仲裁", "律师函", "律师事务所", "律师", "法务部",
    ),
    Category.EXPOSURE: (
        "曝光", "通讯录", "张贴", "大字报", "挂横幅", "朋友圈", "公之于众", "游街", "公示",
        r"(发|挂|贴|传)(到|在)(网上|群里|微信群|抖音|村里)",
        r"公开(你|您)?的?(信息|身份|欠款|欠债|照片|姓名)",
    ),
    Category.THREAT: (
        "威胁", "恐吓", "后果自负", "后果很严重", "后果严重", "走着瞧", "等着瞧", "上门闹",
        r"(上|到|去)(你|您|他|她)?家里?闹",
        "闹事", "堵门", r"打(死|残|断|伤|烂)", "揍", r"砍(死|你|人)", "拿刀", "弄死", "收拾你",
        "废了你", "暴力", "黑社会", "坐牢", "拘留", "逮捕", "通缉", r"抓(你|人|走|起来|去)", "判刑",
        "刑事", r"涉嫌(诈骗|犯罪|违法)", "诈骗罪", "构成犯罪", "犯罪", r"起诉(你|您)",
        r"(?<![转报忠劝广预通宣公])告你", r"(马上|立即|立刻|就要?|将要?|准备)起诉", "强制执行",
        # A lawsuit announced for now or soon, however worded (明天马上依法提起诉讼): one clause.
        r"(马上|立即|立刻|立马|随时|即将|今天|今晚|明天|明日|后天|近日|下周|[\d一二两三四五六七八九十]+(天|日|小时)内)"
        r"[^,.;:!?。\x00]{0,8}(起诉|诉讼(?!服务)|告上法庭)",
        "老赖", "骗子", "不要脸",
        "王八蛋", "混蛋", "去死", "废物", "你全家", "死全家", "滚蛋",
    ),
    Category.FALSE_CONSEQUENCE: (
        "黑名单", "罚款", "全额罚款", "征信污点", "永久失信", "失信被执行人", r"限制?高消费",
        "限高", "不能坐(高铁|飞机)",
        r"(冻结|查封|扣押|没收)(你|您)?的?(银行卡|账户|房子|存款|财产|工资)",
        r"(影响|连累)(你|您)?的?(子女|孩子|小孩)",
        r"(子女|孩子|小孩)(不能|无法)(上学|考公|当兵|入学)",
        "翻倍", r"加倍(罚|收|处罚)", "利滚利",
    ),
    Category.EXTRA_FEE: (
        "手续费", "上门费", "服务费", "催收费", "管理费", "违约金", "滞纳金", "差旅费", "律师费",
        "保证金", "咨询费", "佣金",
    ),
    Category.BORROW_TO_REPAY: (
        "借钱还", "网贷", "套现", "以贷养贷", "高利贷", "借呗", "花呗", "小额贷款公司",
        r"刷(信用)?卡还", r"(向|找)(亲戚|朋友|别人|亲友|家人)借", "卖房还", "卖血", "卖肾",
    ),
    Category.THIRD_PARTY_PRESSURE: (
        rf"({_TELL}){_WHOSE}({_PEOPLE})",
        rf"让{_WHOSE}({_PEOPLE})(知道|替你还|帮你还|替他还|帮他还|还钱)",
        rf"(你|您)的?({_PEOPLE})(都会|会|都)知道",
    ),
}

# English patterns (the `en` SMS set), matched on words: a regular expression between word
# boundaries, on the normalised text with single spaces.
EN: dict[Category, tuple[str, ...]] = {
    Category.IMPERSONATION: (
        r"lawyer\W?s letter", "police", "policeman", "court", "courts", "judge", "judicial",
        "prosecutor", "procuratorate", "lawyer", "lawyers", "attorney", "law firm",
        "legal department", "summons", "warrant", "bailiff", "arbitration",
    ),
    Category.EXPOSURE: (
        r"expos(e|ed|ing|ure)", "contacts? list", "your contacts", r"publish\w*",
        "publicly", r"make (it |this |that )?public", r"public(ise|ize)\w*", "social media",
        r"post(ed|ing)? (your|you)", "shame you",
    ),
    Category.THREAT: (
        r"threat\w*", r"intimidat\w*", "or else", "consequences", "at your own risk", "jail",
        "prison", r"arrest\w*", "detain(ed)?", "criminal", r"violen\w*", "beat you", "hurt you",
        r"kill\w*", r"gangs?(ter)?s?", "deadbeat", "liar", "scum", r"sue (you|your)",
        "lawsuit",
    ),
    Category.FALSE_CONSEQUENCE: (
        r"black ?list\w*", r"fine(d|s)", "full fine", r"(freeze|seize|confiscate) your",
        "double the debt", "your children",
    ),
    Category.EXTRA_FEE: (
        r"(handling|service|collection|visit|visiting|processing|admin|administration|late|legal|"
        r"travel|management) (fee|fees|charge|charges)", "surcharge",
    ),
    Category.BORROW_TO_REPAY: (
        r"borrow\w* (money )?to (re)?pay", "online loans?", "payday loans?", "loan sharks?",
        "cash out", r"credit card (cash|advance)",
    ),
    Category.THIRD_PARTY_PRESSURE: (
        r"(tell|inform|notify|call|contact|visit|text|email) your (family|relatives|parents|"
        r"spouse|wife|husband|children|friends|employer|boss|colleagues|workplace|neighbou?rs|"
        r"village committee)",
        "your employer", "your boss",
    ),
}

# fmt: on

# Whole clauses of our own lawful texts that contain a forbidden word (see the module's text).
ALLOWED: tuple[str, ...] = (
    # agreement art. 3: the creditor's lawful right to sue or apply for enforcement
    "甲方有权就全部欠款依法提起诉讼或申请强制执行",
    # agreement art. 5: the prohibition itself
    "甲方工作人员在催收过程中不得采用威胁、恐吓、骚扰等方式",
)

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_BLANK = "\x00"  # matches no pattern: an allowed phrase cannot join what surrounds it


@dataclass(frozen=True)
class Finding:
    category: Category
    phrase: str  # the words as they stand in the normalised text


def normalise(text: str) -> str:
    """Half-width, case-folded, without zero-width characters, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).casefold()
    return " ".join(text.split())


def _compact(text: str) -> str:
    return "".join(text.split())


# Where a clause ends, in normalised text (NFKC makes ，；：！？ half-width; 。、 stay).
CLAUSE_BREAKS = r"\s,.;:!?。…\"'“”‘’()\[\]{}<>「」『』《》【】"
# Each allowed clause, whole: a clause break (or the text's edge) on both sides; spaces and
# line breaks inside it are allowed (an HTML line wrapped in it).
_ALLOWED = tuple(
    re.compile(
        rf"(?<![^{CLAUSE_BREAKS}{_BLANK}])"
        + r"\s*".join(re.escape(c) for c in _compact(normalise(p)))
        + rf"(?![^{CLAUSE_BREAKS}{_BLANK}])"
    )
    for p in ALLOWED
)
_ZH = {c: re.compile("|".join(f"(?:{p})" for p in ps)) for c, ps in ZH.items()}
_EN = {c: re.compile(r"\b(?:" + "|".join(ps) + r")\b") for c, ps in EN.items()}


def _blank_allowed(text: str) -> str:
    """`text` (normalised) with every allowed clause that stands whole in it blanked out."""
    for clause in _ALLOWED:
        text = clause.sub(lambda m: _BLANK * len(m.group()), text)
    return text


def forbidden_phrases(text: str) -> list[Finding]:
    """Every (category, phrase) the text contains, in category order, each once; [] if clean."""
    spaced = _blank_allowed(normalise(text))
    compact = _compact(spaced)
    found: list[Finding] = []
    for category in Category:
        hits = [m.group() for m in _ZH[category].finditer(compact)]
        hits += [m.group() for m in _EN[category].finditer(spaced)]
        for phrase in hits:
            finding = Finding(category, phrase)
            if finding not in found:
                found.append(finding)
    return found


def categories(findings: list[Finding]) -> list[Category]:
    """The categories of some findings, each once, in category order."""
    return [c for c in Category if any(f.category == c for f in findings)]
