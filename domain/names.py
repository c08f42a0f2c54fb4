"""Names shared by the workflow, the worker and the clients."""

WORKFLOW_TYPE = "LoanCollectionWorkflow"
DEFAULT_TASK_QUEUE = "loan-collection"


def workflow_id(loan_no: str) -> str:
    """One case per loan: starting the same loan twice attaches to the running case."""
    return f"collection-{loan_no}"


def case_key(loan_no: str, generation: str, kind: str, seq: int) -> str:
    """The idempotency key of a case's n-th message, task or visit record. A case started
    again after a failed or terminated run is a new generation with keys of its own (the
    released code's cases have no generation part)."""
    if generation:
        return f"{loan_no}:{generation}:{kind}:{seq}"
    return f"{loan_no}:{kind}:{seq}"


class Activities:
    """Activity names, so workflow code never imports the activity modules (and their I/O)."""

    LOAD_CASE = "load_case"
    ASSESS_CASE = "assess_case"
    ASSIGN_COLLECTORS = "assign_collectors"
    CHECK_VISIT_TRAINING = "check_visit_training"
    RECORD_TRANSITION = "record_transition"
    CREATE_TASK = "create_task"
    SEND_SMS = "send_sms"
    RECORD_VISIT = "record_visit"
    RECORD_PAYMENT = "record_payment"
    RECORD_DEBT = "record_debt"
    RENDER_AGREEMENT = "render_agreement"
    RECORD_SIGNATURE = "record_signature"
    RECORD_CALL = "record_call"
    RECORD_CONSENT = "record_consent"
    RECORD_PROMISE = "record_promise"
    RECORD_WAIVER = "record_waiver"
    RAISE_ALERT = "raise_safety_alert"
    RECORD_SAFETY = "record_safety"
    RECORD_COMPLAINT = "record_complaint"
