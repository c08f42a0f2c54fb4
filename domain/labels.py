"""What people read: the Chinese name of every stage, outcome and task kind (the code after
it on pages, so that a supervisor and the CLI's output can be matched)."""

from __future__ import annotations

from domain.stages import RiskTier, Stage, TaskKind, VisitOutcome

STAGE_ZH = {
    Stage.INVESTIGATION: "催收前调查",
    Stage.INITIAL_CONTACT: "初次联系",
    Stage.FIELD_VISIT: "上门外访",
    Stage.NEGOTIATION: "还款协商",
    Stage.AGREEMENT_SIGNING: "签订还款协议",
    Stage.FOLLOW_UP: "履约跟进",
    Stage.ON_HOLD: "暂停催收",
    Stage.PAID_IN_FULL: "已结清",
    Stage.LEGAL_REVIEW: "法务审查",
    Stage.LEGAL_ESCALATION: "转法律诉讼",
    Stage.WRITTEN_OFF: "核销",
    Stage.CANCELLED: "已撤销",
}
VISIT_OUTCOME_ZH = {
    VisitOutcome.MET: "见到本人",
    VisitOutcome.PROMISED_TO_PAY: "承诺还款",
    VisitOutcome.NOT_HOME: "不在家",
    VisitOutcome.REFUSED: "拒绝沟通",
    VisitOutcome.HOSTILE: "有敌意",
    VisitOutcome.MOVED: "已搬走",
}
TASK_KIND_ZH = {
    TaskKind.PHONE_CALL: "电话联系",
    TaskKind.VISIT: "上门外访",
    TaskKind.VISIT_REMINDER: "外访提醒",
    TaskKind.SUPERVISOR_ESCALATION: "主管督办",
    TaskKind.NEGOTIATE: "还款协商",
    TaskKind.COLLECT_SIGNATURE: "签署协议",
    TaskKind.REVISIT: "回访",
    TaskKind.CHECK_CLAIMED_PAYMENT: "核实还款",
    TaskKind.READ_REPLY: "阅读短信回复",
    TaskKind.ASSIGN_COLLECTOR: "分派催收员",
    TaskKind.REFUND_OVERPAYMENT: "退还多缴款",
    TaskKind.REVIEW_WORDING: "审核用语",
    TaskKind.APPROVE_WAIVER: "审批减免",
    TaskKind.SAFETY_ALERT: "安全警报",
    TaskKind.LEGAL_REVIEW: "法务审查",
    TaskKind.LEGAL_REVIEW_OVERDUE: "法务审查逾期",
    TaskKind.COMPLAINT: "投诉处理",
    TaskKind.COMPLAINT_OVERDUE: "投诉处理逾期",
}
RISK_ZH = {RiskTier.LOW: "低", RiskTier.MEDIUM: "中", RiskTier.HIGH: "高"}

_ALL: dict[str, str] = {
    **{str(k): v for k, v in STAGE_ZH.items()},
    **{str(k): v for k, v in TASK_KIND_ZH.items()},
    **{str(k): v for k, v in VISIT_OUTCOME_ZH.items()},
}


def zh(code: object) -> str:
    """The Chinese name of a stage, task kind or visit outcome, or the code itself."""
    return _ALL.get(str(code), str(code))


def label(code: object) -> str:
    """ "上门外访 FIELD_VISIT": Chinese first, the code after it."""
    name = zh(code)
    return str(code) if name == str(code) else f"{name} {code}"
