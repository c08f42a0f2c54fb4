"""Investigation rules: a loan and its borrower's situation → risk tier, strategy and goal."""

from __future__ import annotations

from datetime import datetime

from domain.models import Assessment, CaseFacts
from domain.money import yuan
from domain.policy import Policy
from domain.stages import RiskTier
from domain.timerules import days_past_due


def assess(facts: CaseFacts, policy: Policy, as_of: datetime) -> Assessment:
    reasons: list[str] = []
    score = 0
    dpd = days_past_due(facts.overdue_since, as_of, policy)
    if dpd > 90:
        score += 2
        reasons.append(f"{dpd} days past due")
    elif dpd > 30:
        score += 1
        reasons.append(f"{dpd} days past due")
    income = max(facts.monthly_income_fen, 1)
    months_of_income = facts.debt_fen / income
    if facts.monthly_income_fen <= 0:
        score += 2
        reasons.append("no known income")
    elif months_of_income > 12:
        score += 2
        reasons.append(f"debt is {months_of_income:.0f} months of income")
    elif months_of_income > 6:
        score += 1
        reasons.append(f"debt is {months_of_income:.0f} months of income")
    if facts.prior_broken_promises >= 2:
        score += 2
        reasons.append(f"{facts.prior_broken_promises} broken promises before")
    elif facts.prior_broken_promises == 1:
        score += 1
        reasons.append("a broken promise before")
    if facts.hostile:
        score += 2
        reasons.append("hostile at an earlier visit")
    tier = RiskTier.HIGH if score >= 4 else RiskTier.MEDIUM if score >= 2 else RiskTier.LOW

    if facts.disaster_affected:
        strategy = "HARDSHIP_RESTRUCTURE"
        reasons.append("household affected by a disaster")
    else:
        strategy = {
            RiskTier.LOW: "REMIND_AND_PLAN",
            RiskTier.MEDIUM: "VISIT_AND_PLAN",
            RiskTier.HIGH: "TEAM_VISIT",
        }[tier]
    # A plan the household can carry: about a third of monthly income per installment.
    affordable = max(policy.min_installment_fen, facts.monthly_income_fen // 3)
    months = min(policy.max_installments, max(1, -(-facts.debt_fen // affordable)))
    goal = (
        f"repay {yuan(facts.debt_fen)} yuan in full"
        if months == 1
        else f"repay {yuan(facts.debt_fen)} yuan over about {months} monthly installments"
    )

    team = (
        tier.value in policy.team_visit_risk_tiers
        or (facts.remote and policy.team_visit_remote)
        or (facts.hostile and policy.team_visit_after_hostile)
    )
    if team:
        reasons.append("team of two required")
    return Assessment(tier.value, strategy, goal, team, reasons or ["no aggravating factor"])
