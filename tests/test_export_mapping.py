"""Exports in the cooperative's own shape (issue 18, item 2): the columns found by their
Chinese (and English) synonyms, the branch by its registered name, the overdue-since date
derived from a due date or a days-overdue count and the export date, .xlsx workbooks with
real date cells, a mapping profile, ambiguous headers refused, and `intake --dry-run`
printing the mapping before anything is written. Dates are days around today."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from cli.main import main
from db.models import Borrower, Loan, Payment
from domain.policy import Policy
from feeds.columns import (
    IGNORE,
    LOAN_FIELDS,
    PAYMENT_FIELDS,
    AmbiguousColumns,
    letter,
    map_columns,
    normalize,
    synonyms_of,
)
from feeds.csv_files import FileError
from feeds.loans import DATE_FIELDS, NEEDED, intake, validate
from feeds.payments import post_payments
from feeds.profile import ProfileError, parse_profile

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
NAMES = {
    "QX01": "青溪县农村信用合作联社城关信用社",
    "QX02": "青溪县农村信用合作联社石门信用社",
    "LS01": "临山县农村信用合作联社河口信用社",
}
# The columns every loan export needs besides the one a test is about, by their own names.
BASE = {
    "loan_no": "loan_no",
    "branch": "branch",
    "id_number": "id_number",
    "name": "name",
    "principal_yuan": "principal_yuan",
    "outstanding_principal_yuan": "outstanding_principal_yuan",
    "overdue_since": "overdue_since",
}


def write(path: Path, lines: list[str], encoding: str = "utf-8-sig") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


# ------------------------------------------------------------------ the synonyms, group by group


@pytest.mark.parametrize("field", list(LOAN_FIELDS))
def test_each_loan_synonym_reads_as_its_field(field: str) -> None:
    for synonym in (field, *LOAN_FIELDS[field]):
        others = [h for f, h in BASE.items() if f != field and not _same_need(f, field)]
        header = ["序号", *others, synonym, "备注"]
        cmap = map_columns(header, LOAN_FIELDS, NEEDED)
        assert cmap.sources[field].column == synonym, synonym
        assert cmap.sources[field].index == len(header) - 2
        assert cmap.unused == ["序号", "备注"]


def _same_need(a: str, b: str) -> bool:
    """Fields that stand in for one another (the branch's code or name; a date's sources)."""
    groups = [{"branch", "branch_name"}, {"overdue_since", "due_date", "days_overdue"}]
    return any(a in g and b in g for g in groups)


@pytest.mark.parametrize("field", list(PAYMENT_FIELDS))
def test_each_payment_synonym_reads_as_its_field(field: str) -> None:
    for synonym in (field, *PAYMENT_FIELDS[field]):
        header = [synonym if f == field else f for f in PAYMENT_FIELDS]
        cmap = map_columns(header, PAYMENT_FIELDS, list(PAYMENT_FIELDS))
        assert cmap.sources[field].column == synonym


@pytest.mark.parametrize(
    ("written", "field"),
    [
        ("贷款金额（元）", "principal_yuan"),
        ("贷款金额(元)", "principal_yuan"),
        (" * 客户名称 ", "name"),
        ("逾期天数(天)", "days_overdue"),
        ("Loan No", "loan_no"),
        ("ＩＤ_Number", "id_number"),
        ("贷款余额【元】", "outstanding_principal_yuan"),
    ],
)
def test_headers_are_compared_without_units_marks_spaces_or_case(written: str, field: str) -> None:
    assert synonyms_of(LOAN_FIELDS)[normalize(written)] == field


def test_an_amount_in_ten_thousands_is_not_taken_for_yuan() -> None:
    assert normalize("贷款金额（万元）") not in synonyms_of(LOAN_FIELDS)


def test_no_synonym_means_two_fields_and_letters_are_excel_s() -> None:
    synonyms_of(LOAN_FIELDS)  # raises ValueError on a clash
    synonyms_of(PAYMENT_FIELDS)
    assert [letter(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "A", "B", "Z", "AA", "AB", "ZZ", "AAA",
    ]  # fmt: skip


def test_two_columns_for_one_field_are_refused_naming_both() -> None:
    header = [
        "借据号",
        "户名",
        "网点代码",
        "证件号码",
        "贷款金额",
        "贷款余额",
        "剩余本金",
        "到期日",
    ]
    with pytest.raises(AmbiguousColumns) as e:
        map_columns(header, LOAN_FIELDS, NEEDED)
    message = str(e.value)
    assert "'贷款余额' (column F)" in message and "'剩余本金' (column G)" in message
    assert "outstanding_principal_yuan" in message and "--profile" in message
    # The profile says which one: the other is not read.
    cmap = map_columns(header, LOAN_FIELDS, NEEDED, {"剩余本金": "outstanding_principal_yuan"})
    assert cmap.sources["outstanding_principal_yuan"].column == "剩余本金"
    assert cmap.sources["outstanding_principal_yuan"].how == "profile"
    assert cmap.unused == ["贷款余额"]


def test_missing_columns_name_the_field_its_alternatives_and_the_unread_columns() -> None:
    with pytest.raises(FileError) as e:
        map_columns(["借据号", "客户全称", "网点", "身份证", "贷款金额", "贷款余额"],
                    LOAN_FIELDS, NEEDED)  # fmt: skip
    message = str(e.value)
    assert message.startswith("missing columns: ")
    for needed in ("id_number", "name", "overdue_since", "due_date", "days_overdue"):
        assert needed in message
    assert "columns not recognised: 客户全称, 身份证" in message


# ------------------------------------------------------------------------------ the profile


def profile(text: str):  # type: ignore[no-untyped-def]
    return parse_profile(text, "export.toml", list(LOAN_FIELDS), DATE_FIELDS)


def test_a_profile_reads_columns_formats_and_the_export_date() -> None:
    p = profile(
        f"""
        export_date = {TODAY - timedelta(days=1)}
        header_row = 3
        sheet = "逾期贷款"
        date_format = "%d/%m/%Y"
        [columns]
        "客户全称" = "name"
        "表外欠息" = "{IGNORE}"
        [date_formats]
        due_date = "%Y%m%d"
        """
    )
    assert p.export_date == TODAY - timedelta(days=1) and p.header_row == 3
    assert p.columns == {"客户全称": "name", "表外欠息": IGNORE} and p.sheet == "逾期贷款"
    assert p.format_for("overdue_since") == "%d/%m/%Y" and p.format_for("due_date") == "%Y%m%d"
    assert profile('date_format = "auto"').format_for("due_date") is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('export_dat = "2026-01-01"', "export_dat: unknown key"),
        ('export_date = "yesterday"', "export_date:"),
        ("export_date = 2026-01-01T10:00:00", "export_date:"),
        ("header_row = 0", "header_row:"),
        ('date_format = "%d/%m/%y"', "date_format:"),
        ('date_format = "%m/%Y"', "date_format:"),
        ('date_format = "%Y%d%m%H"', "date_format:"),
        ('[columns]\n"客户全称" = "nmae"', "columns.'客户全称': 'nmae' is not a field"),
        ('[columns]\n"甲" = "name"\n"乙" = "name"', "columns.'乙': name is columns.'甲'"),
        ('[date_formats]\nprincipal_yuan = "%Y%m%d"', "date_formats.principal_yuan:"),
        ('[date_formats]\ndue_date = "%d%m"', "date_formats.due_date:"),
        ("columns = 3", "columns:"),
        ("[columns", "not TOML"),
    ],
)
def test_a_profile_error_names_the_key(text: str, key: str) -> None:
    with pytest.raises(ProfileError) as e:
        profile(text)
    assert str(e.value).startswith("export.toml: ") and key in str(e.value), str(e.value)


# ------------------------------------------------------------------ rows: branch and dates

HEADER_ZH = "借据号,客户名称,所属网点,证件号码,借款金额,剩余本金,表内欠息,逾期罚息"


def row(n: int, branch: str, *dates: object, principal: str = "２００００元") -> str:
    return f"L-{n:04d},王{n},{branch},52240119800101{n:04d},{principal},9000,800,200," + ",".join(
        str(d) for d in dates
    )


def test_a_branch_by_its_registered_name_or_code_unknown_ones_refused(tmp_path: Path) -> None:
    since = TODAY - timedelta(days=30)
    shared = {**NAMES, "QX09": NAMES["QX02"]}  # two branches of one name: the code is needed
    path = write(
        tmp_path / "e.csv",
        [
            f"{HEADER_ZH},首次逾期日",
            row(1, NAMES["QX02"], since),
            row(2, " 临山县农村信用合作联社河口信用社 ", since),  # spaces around it
            row(3, "QX01", since),  # a code in the name column
            row(4, "青溪县城关信用社", since),  # not the registered name
            row(5, "", since),
        ],
    )
    report = validate(path, NAMES, TODAY)
    assert [(s.loan_no, s.branch) for s in report.good] == [
        ("L-0001", "QX02"), ("L-0002", "LS01"), ("L-0003", "QX01"),
    ]  # fmt: skip
    assert [(e.row, e.field) for e in report.errors] == [(5, "branch"), (6, "branch")]
    assert "neither a branch code nor a registered branch name" in str(report.errors[0])
    again = validate(path, shared, TODAY)
    assert "branches QX02, QX09: give the code" in str(again.errors[0])
    assert [s.loan_no for s in validate(path, list(NAMES), TODAY).good] == ["L-0003"]  # codes


def test_days_overdue_and_the_export_date_give_the_overdue_since_date(tmp_path: Path) -> None:
    export_day = TODAY - timedelta(days=2)
    path = write(
        tmp_path / "e.csv",
        [
            f"{HEADER_ZH},逾期天数",
            row(1, "QX01", 45),
            row(2, "QX01", "３０天"),
            row(3, "QX01", 0),
            row(4, "QX01", -3),
            row(5, "QX01", "十天"),
            row(6, "QX01", ""),
        ],
    )
    report = validate(path, NAMES, TODAY, as_of=export_day)
    assert [(s.loan_no, s.overdue_since) for s in report.good] == [
        ("L-0001", export_day - timedelta(days=45)),
        ("L-0002", export_day - timedelta(days=30)),
        ("L-0003", export_day),
    ]
    assert [(e.row, e.field) for e in report.errors] == [
        (5, "days_overdue"), (6, "days_overdue"), (7, "days_overdue"),
    ]  # fmt: skip
    assert (report.export_date, report.export_date_from) == (export_day, "as_of (--as-of)")
    # Without an export date: today, on the policy's clock.
    default = validate(path, NAMES, TODAY)
    assert default.good[0].overdue_since == TODAY - timedelta(days=45)
    assert default.export_date_from.startswith("today")
    with pytest.raises(FileError, match="after today"):
        validate(path, NAMES, TODAY, as_of=TODAY + timedelta(days=1))


def test_a_due_date_is_the_overdue_since_date_and_a_disagreeing_count_is_refused(
    tmp_path: Path,
) -> None:
    due = TODAY - timedelta(days=40)
    path = write(
        tmp_path / "e.csv",
        [
            f"{HEADER_ZH},到期日,逾期天数",
            row(1, "QX01", f"{due:%Y年%m月%d日}", 40),
            row(2, "QX01", f"{due:%Y%m%d}", 41),  # off by one: refused with both figures
            row(3, "QX01", f"{TODAY + timedelta(days=3)}", 0),  # not yet due
            row(4, "QX01", "", 12),  # no date: the count says it
        ],
    )
    report = validate(path, NAMES, TODAY)
    assert [(s.loan_no, s.overdue_since) for s in report.good] == [
        ("L-0001", due), ("L-0004", TODAY - timedelta(days=12)),
    ]  # fmt: skip
    [disagree, future] = report.errors
    assert (disagree.row, disagree.field) == (3, "days_overdue")
    assert f"41 days overdue on the export date {TODAY}" in disagree.message
    assert f"due_date says {due} (40 days)" in disagree.message
    assert (future.row, future.field) == (4, "due_date") and "not yet due" in future.message


def test_an_overdue_since_column_wins_over_a_due_date_and_is_checked_against_days(
    tmp_path: Path,
) -> None:
    since = TODAY - timedelta(days=20)
    path = write(
        tmp_path / "e.csv",
        [
            f"{HEADER_ZH},逾期起始日,到期日,逾期天数",
            row(1, "QX01", since, since - timedelta(days=1), 20),
            row(2, "QX01", since, since, 19),
        ],
    )
    report = validate(path, NAMES, TODAY)
    assert [(s.loan_no, s.overdue_since) for s in report.good] == [("L-0001", since)]
    assert [(e.row, e.field) for e in report.errors] == [(3, "days_overdue")]
    lines = "\n".join(report.mapping_lines())
    assert "逾期起始日 (column I, synonym 同义词); checked against 逾期天数" in lines
    assert "到期日 not used" in lines


def xlsx(path: Path, rows: list[list[object]], title: str | None = None) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "逾期清单"
    if title:
        sheet.append([title])
        sheet.append([f"导出日期：{TODAY}"])
    for r in rows:
        sheet.append(r)
    book.save(path)
    return path


def as_cell(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)  # what a date cell holds  # noqa: DTZ001


def test_id_numbers_saved_as_numbers_are_refused_not_merged(tmp_path: Path) -> None:
    """Excel keeps 15 digits of a number: two IDs typed as numbers can read the same."""
    header = ["贷款编号", "网点代码", "姓名", "身份证号", "贷款金额", "未还本金", "逾期起始日"]
    since = as_cell(TODAY - timedelta(days=40))
    path = xlsx(
        tmp_path / "ids.xlsx",
        [
            header,
            ["N-0001", "QX01", "甲", 522401198001011234, 20000, 9000, since],
            ["N-0002", "QX01", "乙", 522401198001011236, 20000, 9000, since],
            ["N-0003", "QX01", "丙", "522401198001011238", 20000, 9000, since],
        ],
    )
    report = validate(path, NAMES, TODAY)
    assert [s.loan_no for s in report.good] == ["N-0003"]
    refused = [e for e in report.errors if e.field == "id_number"]
    assert {e.row for e in refused} == {2, 3} and "as text" in str(refused[0])


def test_amounts_in_ten_thousands_are_refused_by_their_title_line(tmp_path: Path) -> None:
    header = ["贷款编号", "网点代码", "姓名", "身份证号", "贷款金额", "未还本金", "逾期起始日"]
    row = ["W-0001", "QX01", "甲", "522401198001011234", 5, 4.5, as_cell(TODAY - timedelta(40))]
    path = xlsx(tmp_path / "wan.xlsx", [["逾期贷款明细表", "金额单位：万元"], header, row])
    with pytest.raises(FileError, match="row 1 says the amounts are not in yuan"):
        validate(path, NAMES, TODAY)


def test_an_xlsx_export_with_date_cells_other_headers_and_a_title(tmp_path: Path) -> None:
    due, since = TODAY - timedelta(days=70), TODAY - timedelta(days=9)
    path = xlsx(
        tmp_path / "逾期贷款清单.xlsx",
        [
            ["序号", "贷款账号", "借款人姓名", "机构名称", "身份证号码", "联系电话", "合同金额",
             "本金余额", "应收未收利息", "罚息", "应还日期", "地址"],
            [1, "XL-0001", "赵一", NAMES["QX01"], "522401198001010001", 13912345678, 50000,
             12345.67, 1000.5, 0.1 + 0.2, as_cell(due), "城关镇"],
            [2, "XL-0002", "钱二", "QX02", "522401198001010002", None, 30000,
             30000.01, 0, 0, as_cell(since), ""],
            [3, "XL-0003", "孙三", NAMES["LS01"], "522401198001010003", None, 30000,
             100, 0, 0, f"{since:%Y/%m/%d}", ""],
            [4, "XL-0004", "李四", NAMES["LS01"], "522401198001010004", None, 30000,
             100, 1.005, 0, as_cell(TODAY + timedelta(days=1)), ""],
        ],
        title="青溪县农村信用合作联社逾期贷款清单",
    )  # fmt: skip
    report = validate(path, NAMES, TODAY)
    assert [(s.loan_no, s.branch, s.overdue_since) for s in report.good] == [
        ("XL-0001", "QX01", due), ("XL-0003", "LS01", since),
    ]  # fmt: skip
    first = report.good[0]
    assert (first.phone, first.outstanding_principal_fen) == ("+8613912345678", 1_234_567)
    assert (first.interest_fen, first.penalty_fen) == (100_050, 30)  # 0.30000000000000004
    # Rows numbered as Excel shows them: the header is row 3, below the title.
    assert {(e.row, e.field) for e in report.errors} == {
        (5, "outstanding_principal_yuan"), (7, "interest_yuan"), (7, "due_date"),
    }  # fmt: skip
    assert report.rejected_file is None  # validate alone writes nothing
    # The rejected rows of a workbook: a CSV beside it, UTF-8 with BOM, as the sheet read.
    from feeds.csv_files import rejected_path, write_rejected

    assert report.table is not None
    out = write_rejected(report.table, report.errors, rejected_path(path))
    assert out.name == "逾期贷款清单.rejected.csv"
    rows = list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))
    assert rows[0][:3] == ["拒绝原因", "序号", "贷款账号"]
    assert [r[2] for r in rows[1:]] == ["XL-0002", "XL-0004"]
    assert rows[1][11] == f"{since}"  # the date cell, as a date


def test_a_profile_file_maps_what_the_synonyms_do_not(tmp_path: Path) -> None:
    export_day = TODAY - timedelta(days=1)
    since = export_day - timedelta(days=33)
    (tmp_path / "vendor.toml").write_text(
        f"""# 某核心系统的导出
export_date = {export_day}
date_format = "%d/%m/%Y"

[columns]
"借据" = "loan_no"
"客户" = "name"
"支行" = "branch"
"欠息" = "ignore"
"应收利息合计" = "interest_yuan"
"逾期开始" = "overdue_since"
""",
        encoding="utf-8",
    )
    path = write(
        tmp_path / "vendor.csv",
        [
            "借据,客户,支行,身份证号,贷款金额,贷款余额,欠息,应收利息合计,逾期开始,逾期天数",
            f"V-0001,周五,{NAMES['QX02']},522401198001010005,20000,9000,1,800,{since:%d/%m/%Y},33",
            f"V-0002,吴六,QX01,522401198001010006,20000,9000,1,800,{since},33",  # ISO: a cell
            f"V-0003,郑七,QX01,522401198001010007,20000,9000,1,800,{since:%Y/%m/%d},33",
        ],
        "gb18030",
    )
    report = validate(path, NAMES, TODAY, profile=tmp_path / "vendor.toml")
    good = [(s.loan_no, s.branch, s.name, s.interest_fen, s.overdue_since) for s in report.good]
    assert good == [
        ("V-0001", "QX02", "周五", 80_000, since), ("V-0002", "QX01", "吴六", 80_000, since),
    ]  # fmt: skip
    [error] = report.errors
    assert (error.row, error.field) == (4, "overdue_since")
    assert "not a date in the profile's format '%d/%m/%Y'" in error.message
    assert report.export_date_from == "vendor.toml export_date"
    # --as-of wins over the profile's date: the count of days then disagrees with the date.
    later = validate(path, NAMES, TODAY, profile=tmp_path / "vendor.toml", as_of=TODAY)
    assert {e.field for e in later.errors} == {"days_overdue", "overdue_since"}


def test_a_header_below_a_title_in_a_csv_and_a_named_header_row(tmp_path: Path) -> None:
    since = TODAY - timedelta(days=5)
    lines = ["逾期贷款明细表", "", f"{HEADER_ZH},逾期日期", row(1, "QX01", since)]
    report = validate(write(tmp_path / "t.csv", lines), NAMES, TODAY)
    assert [(s.loan_no, s.overdue_since) for s in report.good] == [("L-0001", since)]
    (tmp_path / "p.toml").write_text("header_row = 1\n", encoding="utf-8")
    with pytest.raises(FileError, match="missing columns"):
        validate(tmp_path / "t.csv", NAMES, TODAY, profile=tmp_path / "p.toml")


# ------------------------------------------------------------------ through the database


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_intake_stores_an_export_in_its_own_shape(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    export_day = TODAY - timedelta(days=1)
    path = xlsx(
        tmp_path / "export.xlsx",
        [
            ["借据号", "户名", "网点名称", "证件号码", "贷款金额", "未还本金", "欠息", "罚息",
             "逾期天数", "手机号码"],
            ["DB-0001", "冯八", NAMES["QX02"], "522401198001010008", 20000, 9000, 800, 200,
             61, "13912345670"],
            ["DB-0002", "陈九", "清溪信用社", "522401198001010009", 20000, 9000, 800, 200,
             61, ""],
        ],
    )  # fmt: skip
    report = asyncio.run(intake(path, sessions, None, "q", Policy(), TODAY, as_of=export_day))
    assert [(e.row, e.field) for e in report.errors] == [(3, "branch")]
    assert report.rejected_file == tmp_path / "export.rejected.csv"
    with sessions() as session:
        loan = session.scalar(select(Loan).where(Loan.loan_no == "DB-0001"))
        assert loan is not None and loan.branch_code == "QX02"
        assert loan.overdue_since == export_day - timedelta(days=61)
        assert loan.outstanding_principal_fen == 900_000
        assert loan.borrower.name == "冯八" and loan.borrower.phone == "+8613912345670"
    assert count(sessions, Loan) == 1


def test_dry_run_prints_the_mapping_and_writes_nothing(
    sessions: sessionmaker[Session], db_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLLECTION_DB_URL", db_url)
    monkeypatch.delenv("COLLECTION_POLICY_FILE", raising=False)
    export_day = TODAY - timedelta(days=3)
    path = write(
        tmp_path / "export.csv",
        [
            "序号,借据号,客户名称,所属网点,身份证号,贷款金额,贷款余额,利息,罚息,逾期天数,客户经理",
            f"1,DR-0001,褚十,{NAMES['QX01']},522401198001010010,20000,9000,800,200,15,老王",
            f"2,DR-0002,卫一,{NAMES['QX01']},522401198001010011,20000,9000,800,200,x,老王",
        ],
    )
    assert main(["intake", str(path), "--dry-run", "--as-of", f"{export_day}"]) == 3
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0] == "columns → fields (列 → 字段):"
    assert any(ln.split() == ["loan_no", "贷款编号", "←", "借据号", "(column", "B,",
                              "synonym", "同义词)"] for ln in lines)  # fmt: skip
    text = out.out
    assert "所属网点 (column D, synonym 同义词) (a name or a code)" in text
    assert (
        "overdue_since" in text
        and "derived 推算: the export date minus the days of 逾期天数" in text
    )
    assert any(ln.split() == ["phone", "手机号", "←", "(no", "column", "无此列)"] for ln in lines)
    assert "not read 未读取的列: 序号, 客户经理" in text
    assert f"export date 导出日期 {export_day} (as_of (--as-of))" in text
    # The mapping first, then the summary; the rejected row on stderr with its field.
    assert text.index("columns → fields") < text.index("2 rows: would import 1, rejected 1")
    assert "rejected: row 3, days_overdue:" in out.err
    assert count(sessions, Loan) == 0 and count(sessions, Borrower) == 0
    assert "DR-0002" in (tmp_path / "export.rejected.csv").read_text("utf-8-sig")

    # A profile's error names the key (exit 2); ambiguous columns name both (exit 1).
    bad = tmp_path / "bad.toml"
    bad.write_text('[columns]\n"客户名称" = "nmae"\n', encoding="utf-8")
    assert main(["intake", str(path), "--dry-run", "--profile", str(bad)]) == 2
    assert "error: --profile: bad.toml: columns.'客户名称': 'nmae'" in capsys.readouterr().err
    twice = write(tmp_path / "twice.csv", ["借据号,合同号,户名", "A-0001,C-1,甲"])
    assert main(["intake", str(twice), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "'借据号' (column A) and '合同号' (column B) both read as loan_no" in err
    assert main(["intake", str(path), "--dry-run", "--as-of", f"{TODAY + timedelta(1)}"]) == 2
    assert count(sessions, Loan) == 0


class NoCases:
    """A Temporal client with no case running: every signal answers NOT_FOUND."""

    def get_workflow_handle(self, workflow_id: str):  # type: ignore[no-untyped-def]
        return self

    async def signal(self, *args: object) -> None:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")


def test_the_payment_feed_reads_its_synonyms_and_xlsx(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    since = TODAY - timedelta(days=30)
    loans = write(tmp_path / "l.csv", [f"{HEADER_ZH},逾期日期", row(1, "QX01", since)])
    asyncio.run(intake(loans, sessions, None, "q", Policy(), TODAY))
    paid = TODAY - timedelta(days=2)
    path = xlsx(
        tmp_path / "pay.xlsx",
        [
            ["借据号", "交易金额", "交易日期", "交易流水号"],
            ["L-0001", 1500.5, datetime(paid.year, paid.month, paid.day, 14, 33), "T-1"],  # noqa: DTZ001
            ["L-0001", "abc", as_cell(paid), "T-2"],
        ],
    )
    report = asyncio.run(post_payments(path, sessions, NoCases(), TODAY, Policy()))  # type: ignore[arg-type]
    assert [(e.row, e.field) for e in report.errors] == [(3, "amount_yuan")]
    assert report.closed == ["T-1"]  # recorded; no case to tell
    with sessions() as session:
        payment = session.scalar(select(Payment).where(Payment.reference == "T-1"))
        assert payment is not None and payment.amount_fen == 150_050
        assert payment.paid_at.astimezone(ZoneInfo("Asia/Shanghai")).date() == paid
