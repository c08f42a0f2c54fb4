"""Which column of an export feeds which field: the synonyms core-banking exports use for each
of our fields, out of the box, and the mapping of one file's header (with a profile's
`[columns]` first, feeds/profile.py). Pure: no files, no database.

A header is compared after NFKC (full-width letters and brackets as ASCII), without spaces,
`_`, `-`, `.`, `:` or a required-mark `*`, case-insensitively, and without a unit suffix
`(元)`/`（元）`/`(天)`: `贷款金额（元）`, `* 姓名` and `Loan No` are `贷款金额`, `姓名` and
`loan_no`. An amount in another unit (`(万元)`) is never taken for yuan: it is not recognised.

Two columns that read as one field are refused (`AmbiguousColumns`, naming both): the file
does not say which one is meant, and a profile does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from feeds.csv_files import FileError

IGNORE = "ignore"  # a profile's `[columns]` value for a column to leave unread

# The overdue-loan export, field → the headers that mean it (the field's own name is one too).
LOAN_FIELDS: dict[str, tuple[str, ...]] = {
    "loan_no": (
        "贷款编号", "借据号", "借据编号", "合同号", "合同编号", "贷款合同号", "借款合同号",
        "贷款账号", "贷款帐号", "loan_number",
    ),
    # The branch: a column of codes, or one of names (the branches file's 网点名称); either
    # cell may hold the code or the registered name. With both, the code column is read.
    "branch": ("网点代码", "机构代码", "机构号", "机构编号", "网点编号", "branch_code"),
    "branch_name": ("网点名称", "网点", "所属网点", "机构名称", "所属机构"),
    "id_number": ("身份证号", "身份证号码", "证件号码", "证件号", "客户证件号码"),
    "name": ("姓名", "客户名称", "客户姓名", "借款人", "借款人姓名", "借款人名称", "户名"),
    "phone": ("手机号", "电话", "手机号码", "联系电话", "手机", "移动电话", "mobile"),
    "principal_yuan": ("贷款金额", "借款金额", "合同金额", "发放金额", "放款金额", "principal"),
    "outstanding_principal_yuan": (
        "未还本金", "贷款余额", "本金余额", "剩余本金", "outstanding_principal", "outstanding",
    ),
    "interest_yuan": ("欠息", "利息", "应收未收利息", "表内欠息", "欠息金额", "interest"),
    "penalty_yuan": ("罚息", "逾期罚息", "罚息金额", "penalty"),
    "overdue_since": ("逾期起始日", "逾期日期", "首次逾期日", "逾期起始日期", "逾期开始日期"),
    # Either of these instead of overdue_since (feeds/loans.py derives it).
    "due_date": ("到期日", "应还日期", "到期日期", "贷款到期日"),
    "days_overdue": ("逾期天数", "dpd"),
    "monthly_income_yuan": ("月收入",),
    "address": ("地址", "家庭住址", "居住地址", "联系地址"),
    "village": ("村", "所在村"),
    "remote": ("偏远",),
}  # fmt: skip

# What an operator reads beside each field's name.
LABELS: dict[str, str] = {
    "loan_no": "贷款编号",
    "branch": "网点",
    "branch_name": "网点名称",
    "id_number": "身份证号",
    "name": "姓名",
    "phone": "手机号",
    "principal_yuan": "贷款金额",
    "outstanding_principal_yuan": "未还本金",
    "interest_yuan": "欠息",
    "penalty_yuan": "罚息",
    "overdue_since": "逾期起始日",
    "due_date": "到期日",
    "days_overdue": "逾期天数",
    "monthly_income_yuan": "月收入",
    "address": "地址",
    "village": "村",
    "remote": "偏远",
    "amount_yuan": "还款金额",
    "paid_on": "还款日期",
    "reference": "流水号",
}

# The payment feed.
PAYMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "loan_no": LOAN_FIELDS["loan_no"],
    "amount_yuan": ("金额", "还款金额", "交易金额", "实还金额", "入账金额"),
    "paid_on": ("还款日期", "入账日期", "交易日期", "实还日期"),
    "reference": ("流水号", "交易流水号", "交易流水", "流水编号"),
}

_UNIT = re.compile(r"[(\[](元|人民币元|天|日)[)\]]$")
_DROPPED = re.compile(r"[\s_\-.:*]+")


def normalize(header: str) -> str:
    """How a header is compared: '贷款金额（元）' → '贷款金额', ' Loan-No ' → 'loanno'."""
    text = unicodedata.normalize("NFKC", header).replace("【", "[").replace("】", "]")
    text = _DROPPED.sub("", text).lower()
    return _UNIT.sub("", text)


def letter(index: int) -> str:
    """A column's letter as a spreadsheet shows it: 0 → A, 26 → AA."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def synonyms_of(fields: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """normalized header → field. Raises ValueError if one header means two fields."""
    out: dict[str, str] = {}
    for name, aliases in fields.items():
        for alias in (name, *aliases):
            key = normalize(alias)
            if out.setdefault(key, name) != name:
                raise ValueError(f"{alias!r} is a synonym of both {out[key]} and {name}")
    return out


@dataclass(frozen=True)
class Source:
    """The column a field is read from."""

    field: str
    column: str  # the header as written
    index: int  # 0-based
    how: str  # "profile" or "synonym"

    def __str__(self) -> str:
        how = "profile 映射" if self.how == "profile" else "synonym 同义词"
        return f"{self.column} (column {letter(self.index)}, {how})"


@dataclass
class ColumnMap:
    sources: dict[str, Source] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)  # headers that feed nothing
    ignored: list[str] = field(default_factory=list)  # headers a profile says to ignore
    chinese: bool = False  # Chinese headers: the rejected file's reason column is 拒绝原因

    @property
    def index(self) -> dict[str, int]:
        return {f: s.index for f, s in self.sources.items()}

    def line(self, name: str) -> str:
        """Which column feeds a field, or none."""
        src = self.sources.get(name)
        fed = str(src) if src else "(no column 无此列)"
        return f"  {name:<27} {LABELS.get(name, ''):<6} ← {fed}"

    def lines(self, fields: Iterable[str]) -> list[str]:
        """One line per field, in `fields`' order, then the columns not read."""
        return [*(self.line(f) for f in fields), *self.rest()]

    def rest(self) -> list[str]:
        out = []
        if self.ignored:
            out.append(f"  ignored by the profile 按映射忽略: {', '.join(self.ignored)}")
        if self.unused:
            out.append(f"  not read 未读取的列: {', '.join(self.unused)}")
        return out


class AmbiguousColumns(FileError):
    """Two columns read as one field."""


def _named(fields: Mapping[str, tuple[str, ...]], name: str) -> str:
    return f"{name} ({'/'.join(fields[name][:5])})"


def map_columns(
    header: list[str],
    fields: Mapping[str, tuple[str, ...]],
    required: Iterable[str | tuple[str, ...]],
    profile_columns: Mapping[str, str] | None = None,
) -> ColumnMap:
    """Each field's column: the profile's `[columns]` first (header as written → field or
    IGNORE), then the synonyms. `required`: fields, or tuples of fields one of which is
    enough. Raises FileError naming the profile's key, both columns of an ambiguous field,
    or the missing fields."""
    texts = [h.strip() for h in header]
    keys = [normalize(h) for h in texts]
    cmap = ColumnMap(chinese=any("\u2e80" <= c for h in texts for c in h))
    taken: set[int] = set()
    for column, name in (profile_columns or {}).items():
        at = [i for i, k in enumerate(keys) if k and k == normalize(column)]
        if not at:
            raise FileError(
                f"profile columns.{column!r}: no such column in the file (its columns: "
                f"{', '.join(t for t in texts if t) or 'none'})"
            )
        if len(at) > 1:
            raise AmbiguousColumns(
                f"profile columns.{column!r}: the file has that column twice (columns "
                f"{' and '.join(letter(i) for i in at)})"
            )
        taken.add(at[0])
        if name == IGNORE:
            cmap.ignored.append(texts[at[0]])
        else:
            cmap.sources[name] = Source(name, texts[at[0]], at[0], "profile")
    alias = synonyms_of(fields)
    candidates: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if i in taken or not key:
            continue
        name = alias.get(key)
        if name is None or name in cmap.sources:  # unknown, or the profile chose another
            cmap.unused.append(texts[i])
        else:
            candidates.setdefault(name, []).append(i)
    ambiguous = []
    for name, at in candidates.items():
        if len(at) > 1:
            both = " and ".join(f"{texts[i]!r} (column {letter(i)})" for i in at)
            ambiguous.append(
                f"columns {both} both read as {name} ({LABELS.get(name, name)}): keep one, or "
                f'say which in a --profile: [columns] "{texts[at[0]]}" = "{name}"'
            )
        else:
            cmap.sources[name] = Source(name, texts[at[0]], at[0], "synonym")
    if ambiguous:
        raise AmbiguousColumns("ambiguous columns: " + "; ".join(ambiguous))
    missing = []
    for need in required:
        options = (need,) if isinstance(need, str) else need
        if not any(o in cmap.sources for o in options):
            missing.append(" or ".join(_named(fields, o) for o in options))
    if missing:
        unread = f"; columns not recognised: {', '.join(cmap.unused)}" if cmap.unused else ""
        raise FileError(
            "missing columns: " + ", ".join(missing) + unread
            + " (name a column's field in a --profile: [columns] \"列名\" = \"field\")"
        )  # fmt: skip
    return cmap


def recognised(header: list[str], fields: Mapping[str, tuple[str, ...]]) -> int:
    """How many cells of a row are headers of `fields`: to find the header below a title."""
    alias = synonyms_of(fields)
    return len({alias[k] for k in map(normalize, header) if k in alias})
