"""Values in the back-office files as people write them (issue 18, item 3): dates and amounts
in their usual forms, the export's figures against each other, and the rejected rows written
back to be corrected and sent again. No server: the parsers and the validation alone. Dates
are days around today, never fixed ones."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from domain.policy import Policy
from feeds.csv_files import (
    EXCEL_EPOCH,
    RowError,
    parse_date,
    read_table,
    write_rejected,
    yuan_to_fen,
)
from feeds.loans import COLUMNS, REQUIRED, validate

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
D = TODAY - timedelta(days=40)
FULL_WIDTH = str.maketrans("0123456789-,./", "０１２３４５６７８９－，．／")


@pytest.mark.parametrize(
    "text",
    [
        f"{D:%Y-%m-%d}",
        f"{D.year}/{D.month}/{D.day}",
        f"{D:%Y/%m/%d}",
        f"{D:%Y.%m.%d}",
        f"{D.year}-{D.month}-{D.day}",
        f"{D.year}年{D.month}月{D.day}日",
        f"{D:%Y年%m月%d日}",
        f"{D:%Y%m%d}",
        str((D - EXCEL_EPOCH).days),
        f"{D:%Y-%m-%d}".translate(FULL_WIDTH),
        f" {D:%Y.%m.%d} ",
    ],
)
def test_dates_in_every_usual_form(text: str) -> None:
    errors: list[RowError] = []
    assert parse_date(4, "overdue_since", text, errors) == D and errors == []


def test_an_excel_date_number_is_the_day_excel_shows() -> None:
    # Excel shows the number 45658 as 2025-01-01 (and 1 as 1900-01-01, off by its 1900 leap
    # year bug, which lies before the accepted range).
    assert parse_date(2, "d", str((date(2025, 1, 1) - EXCEL_EPOCH).days), []) == date(2025, 1, 1)
    assert (date(2025, 1, 1) - EXCEL_EPOCH).days == 45658


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (f"{D.day:02d}/{D.month:02d}/{D.year}", "99/99/9999"),  # day first: ambiguous
        (f"{D.year}-13-{D.day:02d}", "9999-99-99"),  # no 13th month
        (f"{D.year}-02-30", "9999-99-99"),
        (f"{D.year}-{D.month}/{D.day}", "9999-9"),  # mixed separators
        ("522401198001011234", "999999999999999999"),  # an ID number in the date column
        ("12345", "99999"),  # a number, but no Excel date after 1990
        ("88888", "99999"),
        ("yesterday", "AAAAAAAAA"),
        ("张三", "字字"),
        ("=TODAY()", "=AAAAA()"),
    ],
)
def test_anything_else_is_refused_with_its_shape_not_its_value(text: str, shape: str) -> None:
    errors: list[RowError] = []
    assert parse_date(5, "paid_on", text, errors) is None
    [error] = errors
    assert (error.row, error.field) == (5, "paid_on")
    assert shape in error.message and text not in error.message


def test_a_missing_date_is_missing() -> None:
    errors: list[RowError] = []
    assert parse_date(3, "paid_on", "  ", errors) is None
    assert [str(e) for e in errors] == ["row 3, paid_on: missing"]


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12,345.67", 1_234_567),
        ("１２，３４５．６７", 1_234_567),
        ("１２３４５", 1_234_500),
        ("12345.67元", 1_234_567),
        ("12,345.67 元", 1_234_567),
        ("  12345.6  ", 1_234_560),
        ("\u300012345\u3000", 1_234_500),  # ideographic spaces
        ("1,000,000", 100_000_000),
        ("0", 0),
        ("0.05", 5),
    ],
)
def test_amounts_as_people_write_them(text: str, fen: int) -> None:
    errors: list[RowError] = []
    assert yuan_to_fen(2, "principal_yuan", text, errors) == fen and errors == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "not an amount"),
        ("一千元", "not an amount"),
        ("12 345", "not an amount"),
        ("-5", "cannot be negative"),
        ("-1,000.00", "cannot be negative"),
        ("－５", "cannot be negative"),
        ("1.005", "at most two decimals"),
        ("１．００５元", "at most two decimals"),
        ("=1+1", "formula"),
        ("+5", "formula"),
        ("@SUM(A1)", "formula"),
        ("-1+1", "formula"),
        ("NaN", "not an amount"),
        ("Infinity", "not an amount"),
        ("1e3", "not an amount"),
        ("12,34", "not an amount"),  # a decimal comma, or a typo: never 1234
        ("1,2345", "not an amount"),
        ("元", "missing"),
    ],
)
def test_amounts_refused_with_the_field(text: str, says: str) -> None:
    errors: list[RowError] = []
    assert yuan_to_fen(6, "interest_yuan", text, errors) == 0
    [error] = errors
    assert (error.row, error.field) == (6, "interest_yuan") and says in error.message


HEADER = "贷款编号,网点代码,身份证号,姓名,贷款金额,未还本金,欠息,罚息,逾期起始日"


def _export(tmp_path: Path, rows: list[str], encoding: str = "utf-8-sig") -> Path:
    path = tmp_path / "export.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding=encoding)
    return path


def _row(n: int, principal: str, outstanding: str, interest: str, penalty: str) -> str:
    amounts = f"{principal},{outstanding},{interest},{penalty}"
    return f"L-{n:04d},QX01,52240119800101{n:04d},王{n},{amounts},{D}"


def test_figures_out_of_proportion_are_refused_with_the_field_and_figures(tmp_path: Path) -> None:
    path = _export(
        tmp_path,
        [
            _row(1, "20000", "9000", "800", "200"),  # good
            _row(2, "20000", "20000.01", "0", "0"),  # more outstanding than lent
            _row(3, "20000", "9000", "6000", "3000.01"),  # interest + penalty > principal
            _row(4, "20000", "9000", "4000", "5000"),  # exactly the principal: the limit
            _row(5, "20000", "0", "1500", "300"),  # principal repaid: by the loan amount
            _row(6, "20000", "0", "15000", "5000.01"),
            _row(7, "20000", "9000", "1000", "9000"),  # the penalty is the larger: named
        ],
    )
    report = validate(path, ["QX01"], TODAY)
    assert [s.loan_no for s in report.good] == ["L-0001", "L-0004", "L-0005"]
    assert [str(e) for e in report.errors] == [
        "row 3, outstanding_principal_yuan: 20,000.01 yuan outstanding is more than the loan "
        "amount 20,000.00 yuan",
        "row 4, interest_yuan: interest 6,000.00 + penalty 3,000.01 yuan is more than 100 % of "
        "the outstanding principal 9,000.00 yuan (policy max_interest_penalty_percent)",
        "row 7, interest_yuan: interest 15,000.00 + penalty 5,000.01 yuan is more than 100 % "
        "of the loan amount 20,000.00 yuan (policy max_interest_penalty_percent)",
        "row 8, penalty_yuan: interest 1,000.00 + penalty 9,000.00 yuan is more than 100 % of "
        "the outstanding principal 9,000.00 yuan (policy max_interest_penalty_percent)",
    ]
    stricter = validate(path, ["QX01"], TODAY, Policy(max_interest_penalty_percent=10))
    # 1,000 of 9,000 is over 10 %; 1,800 of the loan's 20,000 is not.
    assert [s.loan_no for s in stricter.good] == ["L-0005"]


def test_the_export_reads_each_form_and_refuses_each_bad_value(tmp_path: Path) -> None:
    path = _export(
        tmp_path,
        [
            f'L-0001,QX01,522401198001010001,甲,"20,000",９０００元,800,200,{D:%Y年%m月%d日}',
            f"L-0002,QX01,522401198001010002,乙,20000,9000,800,200,{(D - EXCEL_EPOCH).days}",
            f"L-0003,QX01,522401198001010003,丙,20000,9000,800.001,200,{D:%Y%m%d}",
            f"L-0004,QX01,522401198001010004,丁,20000,9000,800,200,{D.day}/{D.month}/{D.year}",
            f"L-0005,QX01,522401198001010005,戊,20000,NaN,800,200,{D:%Y.%m.%d}",
            f"L-0006,QX01,522401198001010006,己,20000,9000,800,200,{TODAY + timedelta(1):%Y/%m/%d}",
        ],
        "gb18030",
    )
    report = validate(path, ["QX01"], TODAY)
    assert [(s.loan_no, s.overdue_since) for s in report.good] == [("L-0001", D), ("L-0002", D)]
    assert report.good[0].principal_fen == 2_000_000
    assert report.good[0].outstanding_principal_fen == 900_000
    assert {(e.row, e.field) for e in report.errors} == {
        (4, "interest_yuan"),
        (5, "overdue_since"),
        (6, "outstanding_principal_yuan"),
        (7, "overdue_since"),
    }


def test_rejected_rows_are_written_back_as_they_came_with_a_reason(tmp_path: Path) -> None:
    path = _export(
        tmp_path,
        [
            _row(1, "20000", "9000", "800", "200"),
            _row(2, "20000", "9000", "800", "1.005"),
            _row(3, "20000", "9000", "800", "200").replace("王3", "=cmd|' /C calc'!A0"),
        ],
        "gb18030",
    )
    table = read_table(path, COLUMNS, REQUIRED)
    report = validate(path, ["QX01"], TODAY)
    out = write_rejected(table, report.errors, tmp_path / "export.rejected.csv")
    data = out.read_bytes()
    data.decode("gb18030")  # the same encoding...
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # ...not UTF-8 (the Chinese would be mojibake in GBK Excel)
    rows = list(csv.reader(io.StringIO(data.decode("gb18030"))))
    assert rows[0] == ["拒绝原因", *HEADER.split(",")]  # the same headers, the reason first
    assert [r[1] for r in rows[1:]] == ["L-0002", "L-0003"]
    assert rows[1][0] == "penalty_yuan: '1.005': at most two decimals (fen)"
    assert rows[1][1:] == _row(2, "20000", "9000", "800", "1.005").split(",")
    assert rows[2][0].startswith("name: starts like a spreadsheet formula")
    assert rows[2][4] == "'=cmd|' /C calc'!A0"  # opening the file runs nothing

    # Corrected and sent again: the reason column is ignored, and replaced if still refused.
    rows[1][8] = "1.00"
    out.write_bytes(
        "\r\n".join(",".join(f'"{c}"' for c in r) for r in rows).encode("gb18030") + b"\r\n"
    )
    again = validate(out, ["QX01"], TODAY)
    assert [s.loan_no for s in again.good] == ["L-0002"] and again.good[0].penalty_fen == 100
    second = write_rejected(
        read_table(out, COLUMNS, REQUIRED), again.errors, tmp_path / "again.csv"
    )
    rows2 = list(csv.reader(io.StringIO(second.read_bytes().decode("gb18030"))))
    assert rows2[0] == ["拒绝原因", *HEADER.split(",")] and len(rows2) == 2
    assert rows2[1][0].startswith("name: ")


def test_english_headers_get_an_english_reason_column_in_utf8(tmp_path: Path) -> None:
    path = tmp_path / "payments.csv"
    path.write_text(f"loan_no,amount_yuan,paid_on,reference\nL-1,abc,{D},R-1\n", "utf-8")
    from feeds.payments import COLUMNS as PAYMENT_COLUMNS

    table = read_table(path, PAYMENT_COLUMNS, set(PAYMENT_COLUMNS))
    out = write_rejected(table, [RowError(2, "amount_yuan", "x")], tmp_path / "r.csv")
    data = out.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")  # no BOM where there was none
    assert (
        data.decode() == f"reject_reason,loan_no,amount_yuan,paid_on,reference\r\n"
        f"amount_yuan: x,L-1,abc,{D},R-1\r\n"
    )
