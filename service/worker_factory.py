"""One place that builds the worker, for worker.py, the demo and the tests alike."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agreements import AgreementActivities
from activities.cases import CaseActivities
from activities.complaints import ComplaintActivities
from activities.contacts import ContactActivities
from activities.daily_run import DailyRunActivities
from activities.documents import PdfRenderer
from activities.safety import SafetyActivities
from activities.sms import SmsActivities
from activities.sms_gateway import RecordingGateway, SmsGateway
from activities.training_reminders import TrainingReminderActivities
from domain.policy import Policy
from domain.strategy import Strategy
from workflows.collection import LoanCollectionWorkflow
from workflows.daily_run import DailyFeedRunWorkflow
from workflows.training_reminders import TrainingReminderWorkflow


def activities(
    sessions: sessionmaker[Session],
    data_dir: Path,
    gateway: SmsGateway | None = None,
    sms_language: str = "zh",
    pdf: PdfRenderer | None = None,
    strategy: Strategy | None = None,
) -> list[object]:
    """The case activities; `strategy` for the assessment, else the worker's strategy file
    (COLLECTION_STRATEGY_FILE): a what-if runs one worker per strategy in one process."""
    cases = CaseActivities(sessions, strategy)
    sms = SmsActivities(sessions, gateway or RecordingGateway(), sms_language)
    agreements = AgreementActivities(sessions, data_dir / "agreements", pdf)
    contacts = ContactActivities(sessions)
    safety = SafetyActivities(sessions, sms)
    complaints = ComplaintActivities(sessions)
    return [
        cases.load_case,
        cases.assess_case,
        cases.assign_collectors,
        cases.check_visit_training,
        cases.record_transition,
        cases.create_task,
        cases.record_visit,
        cases.record_payment,
        cases.record_debt,
        cases.record_signature,
        cases.record_promise,
        cases.record_waiver,
        sms.send_sms,
        agreements.render_agreement,
        contacts.record_call,
        contacts.record_consent,
        safety.raise_safety_alert,
        safety.record_safety,
        complaints.record_complaint,
    ]


def daily_run_activities(
    sessions: sessionmaker[Session],
    client: Client,
    task_queue: str,
    data_dir: Path,
    policy: Policy | None = None,
) -> list[object]:
    """The daily feed run's: the intake starts cases and the payment feed signals them, with
    the worker's own client, on its task queue; the configured policy unless given."""
    if policy is None:
        from service.settings import Settings

        policy = Settings.from_env().policy()
    run = DailyRunActivities(sessions, client, task_queue, policy, data_dir / "daily-runs")
    return [run.pick_export, run.run_intake, run.run_payments, run.finish_run]


def reminder_activities(
    sessions: sessionmaker[Session], gateway: SmsGateway, sms_language: str, policy: Policy
) -> list[object]:
    """The supervisors' daily training reminder: staff texts through the same gateway."""
    sms = SmsActivities(sessions, gateway, sms_language)
    reminders = TrainingReminderActivities(sessions, sms, policy)
    return [reminders.list_training_reminders, reminders.send_training_reminder]


def build_worker(
    client: Client,
    task_queue: str,
    sessions: sessionmaker[Session],
    data_dir: Path,
    gateway: SmsGateway | None = None,
    executor: ThreadPoolExecutor | None = None,
    sms_language: str = "zh",
    max_cached_workflows: int = 1000,
    pdf: PdfRenderer | None = None,
    policy: Policy | None = None,
    strategy: Strategy | None = None,
) -> Worker:
    executor = executor or ThreadPoolExecutor(max_workers=16)
    if policy is None:
        from service.settings import Settings

        policy = Settings.from_env().policy()
    gateway = gateway or RecordingGateway()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[LoanCollectionWorkflow, DailyFeedRunWorkflow, TrainingReminderWorkflow],
        activities=activities(sessions, data_dir, gateway, sms_language, pdf, strategy)
        + daily_run_activities(sessions, client, task_queue, data_dir, policy)
        + reminder_activities(sessions, gateway, sms_language, policy),
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,
        max_cached_workflows=max_cached_workflows,
        # On SIGTERM, running activities get this long to finish before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=30),
    )
