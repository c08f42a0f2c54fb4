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
    # A dead end's legal review before LEGAL_ESCALATION (collection-v4, issue 15).
    LEGAL_REVIEW = "LEGAL_REVIEW"
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


class CallOutcome(StrEnum):
    """What a collector's call attempt came to (电话催收结果)."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO_ANSWER"
    REFUSED = "REFUSED"  # answered, refused to talk
    WRONG_NUMBER = "WRONG_NUMBER"  # someone else answered: not the debtor's number
    NUMBER_INVALID = "NUMBER_INVALID"  # not in service


UNANSWERED_CALLS = frozenset({CallOutcome.NO_ANSWER})
FAILED_CALLS = frozenset(
    {CallOutcome.NO_ANSWER, CallOutcome.WRONG_NUMBER, CallOutcome.NUMBER_INVALID}
)


class Relation(StrEnum):
    """A loan contact's relation to the debt. Guarantors and co-borrowers are related
    (may be contacted like the debtor); anyone else is unrelated (only after contact with
    the debtor is lost, never told the debt, at most once a week)."""

    GUARANTOR = "GUARANTOR"  # 保证人
    CO_BORROWER = "CO_BORROWER"  # 共同借款人
    FAMILY = "FAMILY"
    OTHER = "OTHER"


RELATED_PARTIES = frozenset({Relation.GUARANTOR, Relation.CO_BORROWER})


class ConsentKind(StrEnum):
    NIGHT_CONTACT = "NIGHT_CONTACT"  # calls and visits 22:00-08:00
    # Texts at all: withdrawn is an opt-out told by call or visit, as on a channel borrowers
    # cannot reply on (Twilio to +86); the send activity then blocks every SMS.
    SMS = "SMS"


class RiskTier(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ReplyIntent(StrEnum):
    OPT_OUT = "OPT_OUT"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    CLAIMS_PAID = "CLAIMS_PAID"
    COMPLAINT = "COMPLAINT"  # 投诉 and its variants: opens a complaint (issue 15)
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
    # A collector's notes use words the collection guideline forbids (domain/wording.py):
    # for the branch's supervisor, written by the activity that stores the notes.
    REVIEW_WORDING = "REVIEW_WORDING"
    APPROVE_WAIVER = "APPROVE_WAIVER"
    # Staff safety (a team not back from a visit, a call for help, a hostile borrower): for
    # the branch's supervisor, then its head, until someone acknowledges.
    SAFETY_ALERT = "SAFETY_ALERT"
    # A dead end waits for a legal reviewer (role LEGAL); no decision by the deadline goes to
    # the branch head.
    LEGAL_REVIEW = "LEGAL_REVIEW"
    LEGAL_REVIEW_OVERDUE = "LEGAL_REVIEW_OVERDUE"
    # A borrower's complaint: to acknowledge and resolve by the policy's deadlines; a deadline
    # passed goes to the branch head.
    COMPLAINT = "COMPLAINT"
    COMPLAINT_OVERDUE = "COMPLAINT_OVERDUE"


class Counselling(StrEnum):
    """Help a collector gave at a visit (记录帮扶)."""

    FINANCIAL_ADVICE = "FINANCIAL_ADVICE"  # 理财/还款建议
    HARDSHIP_REFERRAL = "HARDSHIP_REFERRAL"  # 转介救助（民政、保险理赔、村委会）
    RESTRUCTURING_SUGGESTION = "RESTRUCTURING_SUGGESTION"  # 建议申请重组/展期


class Hardship(StrEnum):
    """The borrower's situation as they stated it at a visit."""

    DISASTER = "DISASTER"  # 受灾（洪水、冰雹、地震）
    ILLNESS = "ILLNESS"  # 因病
    HARVEST_FAILURE = "HARVEST_FAILURE"  # 歉收
    JOB_LOSS = "JOB_LOSS"  # 失业/务工收入中断
    OTHER = "OTHER"


class LegalDecision(StrEnum):
    APPROVE_ESCALATION = "APPROVE_ESCALATION"  # to court / legal escalation
    RETURN_TO_NEGOTIATION = "RETURN_TO_NEGOTIATION"  # with advice for the collectors
    RECOMMEND_WRITE_OFF = "RECOMMEND_WRITE_OFF"


class AlertKind(StrEnum):
    """Why the collectors' safety needs someone at the branch now."""

    OVERDUE = "OVERDUE"  # not checked out by the expected time plus the grace
    HELP = "HELP"  # the team pressed "need help"
    HOSTILE = "HOSTILE"  # a visit reported a hostile borrower


class AlertLevel(StrEnum):
    SUPERVISOR = "SUPERVISOR"
    BRANCH_HEAD = "BRANCH_HEAD"
