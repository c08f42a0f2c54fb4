"""Names shared by the workflow, the worker and the clients."""

WORKFLOW_TYPE = "LoanCollectionWorkflow"
DEFAULT_TASK_QUEUE = "loan-collection"
# An action a collector's phone sends with an id made on the phone (issue 15, weak signal)
# is the Update of that id with this prefix: the case applies each such id once.
PHONE_UPDATE_PREFIX = "phone-"


# Worker roles (WORKER_ROLES): each polls its own task queue, so agreement rendering and SMS
# sending can run in worker processes (and on cores) of their own.
CASES, RENDER, SMS = "cases", "render", "sms"
ROLES = (CASES, RENDER, SMS)
# WORKER_CASES_PART: a cases process may take only the workflow tasks of the cases queue, or
# only its activity tasks (both by default).
WORKFLOWS, ACTIVITIES = "workflows", "activities"
CASE_PARTS = (WORKFLOWS, ACTIVITIES)


def role_queue(task_queue: str, role: str) -> str:
    """The task queue of `role` for the cases on `task_queue`: the cases' own, or
    "<task_queue>-render" and "<task_queue>-sms"."""
    return task_queue if role == CASES else f"{task_queue}-{role}"


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


# The activities that run on a role's own task queue (collection-v4); all others are the cases'.
ACTIVITY_ROLES = {Activities.RENDER_AGREEMENT: RENDER, Activities.SEND_SMS: SMS}
