"""close stale urgent alert tasks (issue 15, weak signal review): data only

The dashboard's urgent banner lists OPEN safety-alert tasks marked URGENT (nobody was
texted). Before the weak-signal work an acknowledgement did not close its alert's tasks, so
such tasks stayed on the banner for ever. Closed (status DONE) here, the URGENT ones:
- whose alert has its acknowledgement in the audit trail (the line keyed
  `{loan}[:{generation}]:safety:0:ack:{n}`, activities/safety.py);
- of an earlier generation of the case than its row's (a run terminated, the case started
  again; a row without a generation tells nothing);
- of a hostile visit's alert on a closed case (a closed case ends without waiting for
  those; a call for help or an overdue team it waits for, so those stay until acknowledged).
The rules are spelled out here, not imported: a migration stays as it was written.
A downgrade leaves the tasks as they are (nothing to undo that anyone needs).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

URGENT = "【紧急 URGENT：无人收到短信 nobody was texted】"


def _stale(conn: sa.Connection, task_key: str, loan_no: str, generation: str, closed: bool,
           detail: str) -> bool:  # fmt: skip
    found = re.fullmatch(re.escape(loan_no) + r"(?::([^:]*))?:alert:(\d+):[A-Z_]+", task_key)
    if found is None:
        return False
    task_generation, number = found[1] or "", found[2]
    if generation and task_generation != generation:
        return True  # an earlier generation's run: nobody acknowledges it any more
    if closed and "(HOSTILE)" in detail:
        return True
    head = f"{loan_no}:{task_generation}" if task_generation else loan_no
    marker = f"[{head}:safety:0:ack:{number}]"
    acks = conn.execute(
        sa.text(
            "SELECT detail FROM audit_events WHERE loan_no = :loan "
            "AND action = 'alert_acknowledged'"
        ),
        {"loan": loan_no},
    )
    return any(str(d).endswith(marker) for (d,) in acks)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT t.id, t.key, t.detail, l.loan_no, c.generation, c.closed_at "
            "FROM tasks t JOIN cases c ON c.id = t.case_id JOIN loans l ON l.id = c.loan_id "
            "WHERE t.kind = 'SAFETY_ALERT' AND t.status = 'OPEN'"
        )
    ).all()
    done = [
        task_id
        for task_id, key, detail, loan_no, generation, closed_at in rows
        if str(detail).startswith(URGENT)
        and _stale(conn, key, loan_no, generation or "", closed_at is not None, str(detail))
    ]
    for task_id in done:
        conn.execute(
            sa.text("UPDATE tasks SET status = 'DONE' WHERE id = :id"), {"id": task_id}
        )


def downgrade() -> None:
    pass
