"""Readable terminal output for a case's status."""

from __future__ import annotations

from domain.models import CaseStatus
from domain.money import yuan
from domain.policy import Policy
from domain.timerules import local


def _t(moment, policy: Policy) -> str:  # type: ignore[no-untyped-def]
    return local(moment, policy).strftime("%Y-%m-%d %H:%M") if moment else "-"


def status_text(s: CaseStatus, policy: Policy) -> str:
    """`policy`: the configured one on the clock of the case's branch (its times are local)."""
    money = lambda fen: "-" if fen is None else f"{yuan(fen)} 元"  # noqa: E731
    lines = [
        f"Loan {s.loan_no}  branch {s.branch}  run {s.run}",
        f"  stage        {s.stage} since {_t(s.stage_since, policy)}",
        f"  next action  {s.next_action or '-'} at {_t(s.next_action_at, policy)}",
        f"  collectors   {', '.join(s.collectors) or '-'}"
        + ("  (team of two required)" if s.team_required else ""),
        f"  risk         {s.risk_tier or '-'} / {s.strategy or '-'}"
        f"  days past due {s.days_past_due if s.days_past_due is not None else '-'}",
        f"  debt         {money(s.debt_fen)}  paid {money(s.paid_fen)}"
        f"  outstanding {money(s.outstanding_fen)}",
    ]
    if s.hold:
        lines.append(f"  ON HOLD until {_t(s.hold.until, policy)}: {s.hold.reason} ({s.hold.by})")
    if s.installments:
        lines.append(f"  plan {s.plan_number}:")
        for i in s.installments:
            lines.append(
                f"    {i.seq:>2}. {_t(i.due_at, policy)[:10]}  {yuan(i.amount_fen):>12}  {i.status}"
            )
    if s.agreement:
        signed = " signed" if s.signed_version == s.agreement.version else ""
        lines.append(f"  agreement v{s.agreement.version} sha256 {s.agreement.sha256}{signed}")
    c = s.counters
    lines.append(
        f"  attempts     sms {c.sms_sent} (blocked {c.sms_blocked}, failed {c.sms_failed}), "
        f"visits {c.visits}, "
        f"unreached {c.unreached_visits}, refusals {c.refusals}, broken promises "
        f"{c.broken_promises}, renegotiations {c.renegotiations}, escalations {c.escalations}"
    )
    lines.append("  history:")
    for e in s.history[-12:]:
        lines.append(f"    {_t(e.at, policy)}  {e.kind:<10} {e.detail}  [{e.actor}]")
    return "\n".join(lines)
