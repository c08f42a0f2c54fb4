"""The loan contacts file: guarantors, co-borrowers, family and others who may be asked to pass
a message on (`loan_contacts`). Every row is validated; the good rows are stored in one
transaction (service/loan_contacts.py), so the same file imported twice changes nothing.

| column | also | what |
| --- | --- | --- |
| loan_no | 贷款编号, 借据号 | a loan in the database |
| name | 姓名 | the contact's name |
| relation | 关系 | 保证人, 共同借款人, 家属/亲属, 其他 (or GUARANTOR, CO_BORROWER, FAMILY, OTHER) |
| phone | 手机号, 电话 | a mainland mobile (spaces, dashes, full-width digits) or +country number |

A rejected row is reported with its line and field; a phone number is never repeated in a
message (personal data), not even a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Borrower, Loan
from domain.phones import PhoneError, normalize_phone
from feeds.csv_files import RowError, read_rows, text_field
from service.loan_contacts import NewContact, StoreResult, parse_relation, store_contacts

COLUMNS: dict[str, tuple[str, ...]] = {
    "loan_no": ("贷款编号", "借据号"),
    "name": ("姓名",),
    "relation": ("关系",),
    "phone": ("手机号", "电话"),
}


@dataclass
class ContactsReport:
    rows: int = 0
    stored: StoreResult = field(default_factory=StoreResult)
    errors: list[RowError] = field(default_factory=list)


def import_contacts(
    path: Path, sessions: sessionmaker[Session], by: str = "contacts-feed"
) -> ContactsReport:
    """Raises FileError when the file cannot be read or lacks a column."""
    rows = read_rows(path, COLUMNS, set(COLUMNS))
    report = ContactsReport(rows=len(rows))
    with sessions() as session:
        owners = dict(
            session.execute(
                select(Loan.loan_no, Borrower.phone)
                .join(Borrower, Borrower.id == Loan.borrower_id)
                .where(Loan.loan_no.in_({c["loan_no"] for _, c in rows}))
            ).all()
        )
    seen: dict[tuple[str, str], int] = {}
    good: list[NewContact] = []
    for line, cells in rows:
        errors: list[RowError] = []
        loan_no = text_field(line, "loan_no", cells["loan_no"], errors)
        if loan_no and loan_no not in owners:
            errors.append(RowError(line, "loan_no", f"unknown loan {loan_no!r}"))
        name = text_field(line, "name", cells["name"], errors)
        relation = parse_relation(cells["relation"])
        if relation is None:
            errors.append(
                RowError(
                    line,
                    "relation",
                    f"{cells['relation'][:20]!r}: 保证人, 共同借款人, 家属/亲属 or 其他 "
                    "(GUARANTOR, CO_BORROWER, FAMILY, OTHER)",
                )
            )
        phone = ""
        if not cells["phone"]:
            errors.append(RowError(line, "phone", "missing"))
        else:
            try:
                phone = normalize_phone(cells["phone"])
            except PhoneError:  # its message repeats the number: not in a report
                errors.append(
                    RowError(line, "phone", "not a mainland mobile (1xx xxxx xxxx) nor +country")
                )
        if phone and loan_no in owners and phone == owners[loan_no]:
            errors.append(RowError(line, "phone", "the borrower's own number, not a contact's"))
        if phone and loan_no:
            if (loan_no, phone) in seen:
                first = seen[(loan_no, phone)]
                errors.append(RowError(line, "phone", f"this loan has that number in row {first}"))
            seen.setdefault((loan_no, phone), line)
        if errors:
            report.errors.extend(errors)
            continue
        assert relation is not None
        good.append(NewContact(line, loan_no, name, relation, phone))
    if good:
        report.stored = store_contacts(sessions, good, by)
    return report
