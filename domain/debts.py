"""A later export's figures applied to a running case's debt (issue 18, "debts that change").

The case counts its debt as everything owed since it opened (`debt_fen`, with its
principal / interest / penalty breakdown) and its payments as everything paid since then
(`paid_fen`); outstanding is the difference. An export states balances at the start of its
date, with the payments booked before that date already deducted. So the case's new debt is
the export's total plus the payments the export has already booked, and outstanding becomes
the export's total less the payments the export has not seen yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.models import CountedPayment, DebtUpdate


@dataclass(frozen=True)
class DebtFigures:
    principal_fen: int
    interest_fen: int
    penalty_fen: int

    @property
    def debt_fen(self) -> int:
        return self.principal_fen + self.interest_fen + self.penalty_fen


def unbooked_fen(ledger: list[CountedPayment], update: DebtUpdate) -> int:
    """Counted payments dated on or after the export's date: not yet in its balances."""
    return sum(p.amount_fen for p in ledger if p.paid_on >= update.as_of)


def updated_debt(
    principal_fen: int | None,
    paid_fen: int,
    ledger: list[CountedPayment],
    update: DebtUpdate,
) -> DebtFigures:
    """The case's debt after `update`.

    Payments counted before the ledger began (a released case) are taken as booked. The
    total is exact; the breakdown keeps the principal the case opened with unless the export
    shows less even with the booked payments added back (a write-down or a correction), and
    puts the rest on interest, with the export's penalty as it is: which part of a payment the
    core system put on interest or penalty is not in the export.
    """
    booked = paid_fen - unbooked_fen(ledger, update)
    total = update.total_fen + booked
    restored = update.principal_fen + booked  # the principal if every payment went on it
    principal = restored if principal_fen is None else min(principal_fen, restored)
    return DebtFigures(principal, total - principal - update.penalty_fen, update.penalty_fen)
