"""A small demo portfolio: branches, collectors, borrowers and overdue loans.

Used by the demo command and the tests. Real portfolios come through the intake feed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Borrower, Branch, Collector, Loan
from db.repository import insert_ignore
from domain.policy import Policy

BRANCHES = [
    ("QX01", "青溪县农村信用合作联社城关信用社", "青溪县"),
    ("QX02", "青溪县农村信用合作联社石门信用社", "青溪县"),
    ("LS01", "临山县农村信用合作联社河口信用社", "临山县"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "建国秀英志强桂兰海燕春梅德明玉珍永红丽华"
# A demo collector's safety training: valid two years from the day the data is made (longer
# than the months a time-skipping test runs a case).
TRAINING_VALID_DAYS = 730
COLLECTOR_CAPACITY = 40  # open cases a demo collector takes


@dataclass
class LoanSpec:
    loan_no: str
    branch: str
    id_number: str
    name: str
    phone: str | None
    principal_fen: int
    outstanding_principal_fen: int
    interest_fen: int
    penalty_fen: int
    overdue_since: date
    monthly_income_fen: int = 300_000
    remote: bool = False
    hostile: bool = False
    disaster_affected: bool = False
    sms_opted_out: bool = False
    prior_broken_promises: int = 0
    village: str = ""
    address: str = ""


def add_branches_and_collectors(
    session: Session,
    per_branch: int = 3,
    timezone: str = Policy().timezone,
    today: date | None = None,
    expiring_in_days: int | None = None,
) -> None:
    """The demo branches, on the clock `timezone` (the demo passes the configured policy's),
    and their collectors, trained: valid TRAINING_VALID_DAYS from `today` (that clock's
    date unless given). Only rows inserted now get a date: a collector already stored keeps
    theirs, none included (nobody vouches for a training that was never recorded).

    `expiring_in_days` (the demo): each branch also gets one more collector whose training
    expires that many days from today (within the policy's warning window), so that the
    dashboard and the daily reminder have something to show; the others stay trained, so
    remote and hostile cases still get their teams."""
    today = today or datetime.now(ZoneInfo(timezone)).date()
    valid_until = today + timedelta(days=TRAINING_VALID_DAYS)
    for code, name, region in BRANCHES:
        insert_ignore(
            session,
            Branch,
            dict(code=code, name=name, region=region, timezone=timezone),
            ["code"],
        )
        expiries = [valid_until] * per_branch
        if expiring_in_days is not None:
            expiries.append(today + timedelta(days=expiring_in_days))
        for n, expires in enumerate(expiries, 1):
            insert_ignore(
                session,
                Collector,
                dict(
                    id=f"{code}-C{n:02d}",
                    name=f"催收员{code}-{n}",
                    branch_code=code,
                    capacity=COLLECTOR_CAPACITY,
                    active=True,
                    training_expires_on=expires,
                ),
                ["id"],
            )


def add_loan(session: Session, spec: LoanSpec) -> Loan:
    """Insert the borrower (by ID number) and the loan (by loan number) unless present."""
    insert_ignore(
        session,
        Borrower,
        dict(
            id_number=spec.id_number,
            name=spec.name,
            phone=spec.phone,
            address=spec.address or (f"{spec.village}村" if spec.village else ""),
            village=spec.village,
            remote=spec.remote,
            hostile=spec.hostile,
            monthly_income_fen=spec.monthly_income_fen,
            household_size=3,
            disaster_affected=spec.disaster_affected,
            sms_opted_out=spec.sms_opted_out,
        ),
        ["id_number"],
    )
    borrower_id = session.scalar(select(Borrower.id).where(Borrower.id_number == spec.id_number))
    insert_ignore(
        session,
        Loan,
        dict(
            loan_no=spec.loan_no,
            borrower_id=borrower_id,
            branch_code=spec.branch,
            product="农户小额信用贷款",
            principal_fen=spec.principal_fen,
            outstanding_principal_fen=spec.outstanding_principal_fen,
            interest_fen=spec.interest_fen,
            penalty_fen=spec.penalty_fen,
            overdue_since=spec.overdue_since,
            prior_broken_promises=spec.prior_broken_promises,
            status="OVERDUE",
        ),
        ["loan_no"],
    )
    loan = session.scalar(select(Loan).where(Loan.loan_no == spec.loan_no))
    assert loan is not None
    return loan


def demo_specs(count: int, today: date, seed: int = 7) -> list[LoanSpec]:
    """Deterministic, varied loans: small and large, remote, hostile, flooded."""
    rnd = random.Random(seed)
    specs = []
    for i in range(count):
        branch = BRANCHES[i % len(BRANCHES)][0]
        principal = rnd.choice([20_000, 30_000, 50_000, 80_000, 100_000]) * 100
        outstanding = principal * rnd.choice([3, 5, 8, 10]) // 10
        birth = date(1960, 1, 1) + timedelta(days=rnd.randrange(0, 14000))
        specs.append(
            LoanSpec(
                loan_no=f"DEMO{today:%Y%m}{i + 1:05d}",
                branch=branch,
                id_number=f"5224{rnd.randrange(10, 99)}{birth:%Y%m%d}{rnd.randrange(1000, 9999)}",
                name=rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN),
                phone=f"+86139{rnd.randrange(10_000_000, 99_999_999)}",
                principal_fen=principal,
                outstanding_principal_fen=outstanding,
                interest_fen=outstanding * rnd.choice([3, 5, 8]) // 100,
                penalty_fen=outstanding * rnd.choice([0, 1, 2]) // 100,
                overdue_since=today - timedelta(days=rnd.choice([15, 35, 60, 95, 200])),
                monthly_income_fen=rnd.choice([150_000, 250_000, 400_000, 600_000]),
                remote=rnd.random() < 0.2,
                hostile=rnd.random() < 0.05,
                disaster_affected=rnd.random() < 0.1,
                prior_broken_promises=rnd.choice([0, 0, 0, 1, 2]),
                village=rnd.choice(["石门", "河口", "上坝", "龙潭", "桃园"]),
            )
        )
    return specs
