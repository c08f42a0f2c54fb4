"""The stages of a collection case and the words used for their outcomes."""

from enum import StrEnum


class Stage(StrEnum):
    INVESTIGATION = "INVESTIGATION"
    INITIAL_CONTACT = "INITIAL_CONTACT"
    FIELD_VISIT = "FIELD_VISIT"
    NEGOTIATION = "NEGOTIATION"
    AGREEMENT_SIGNING = "AGREEMENT_SIGNING"
    FOLLOW_UP = "FOLLOW_UP"
    ON_HOLD = "ON_HOLD"
    # Terminal stages: the workflow completes in one of these.
    PAID_IN_FULL = "PAID_IN_FULL"
    LEGAL_ESCALATION = "LEGAL_ESCALATION"
    WRITTEN_OFF = "WRITTEN_OFF"
    CANCELLED = "CANCELLED"


CLOSED_STAGES = frozenset(
    {Stage.PAID_IN_FULL, Stage.LEGAL_ESCALATION, Stage.WRITTEN_OFF, Stage.CANCELLED}
)
# Stages a supervisor may close a case into by hand.
MANUAL_CLOSE_STAGES = frozenset({Stage.LEGAL_ESCALATION, Stage.WRITTEN_OFF, Stage.CANCELLED})


class VisitOutcome(StrEnum):
    MET = "MET"
    PROMISED_TO_PAY = "PROMISED_TO_PAY"
    NOT_HOME = "NOT_HOME"
    REFUSED = "REFUSED"
    HOSTILE = "HOSTILE"
    MOVED = "MOVED"


class RiskTier(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ReplyIntent(StrEnum):
    OPT_OUT = "OPT_OUT"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    CLAIMS_PAID = "CLAIMS_PAID"
    OTHER = "OTHER"


class TaskKind(StrEnum):
    """Work items for people, written by the workflow through an activity."""

    PHONE_CALL = "PHONE_CALL"
    VISIT = "VISIT"
    VISIT_REMINDER = "VISIT_REMINDER"
    SUPERVISOR_ESCALATION = "SUPERVISOR_ESCALATION"
    NEGOTIATE = "NEGOTIATE"
    COLLECT_SIGNATURE = "COLLECT_SIGNATURE"
    REVISIT = "REVISIT"
    CHECK_CLAIMED_PAYMENT = "CHECK_CLAIMED_PAYMENT"
    READ_REPLY = "READ_REPLY"
    ASSIGN_COLLECTOR = "ASSIGN_COLLECTOR"
    REFUND_OVERPAYMENT = "REFUND_OVERPAYMENT"
