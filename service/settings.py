"""Configuration from the environment, with embedded defaults (local dev server, SQLite)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from db.engine import data_dir, default_url
from domain.names import CASE_PARTS, CASES, DEFAULT_TASK_QUEUE, ROLES
from domain.policy import Policy, load_policy
from service.sandbox_code import SHARED, parse_sandbox


@dataclass
class Settings:
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    # Remote cluster or Temporal Cloud: mTLS client certificate and key, or an API key.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    api_key: str | None = None
    db_url: str = field(default_factory=default_url)
    data_dir: Path = field(default_factory=data_dir)
    policy_file: str | None = None
    sms_language: str = "zh"
    activity_threads: int = 16
    max_cached_workflows: int = 1000
    codec_keys: str | None = None  # COLLECTION_CODEC_KEYS: payload encryption (service/codec.py)
    pdf_processes: int = 1  # agreement PDFs rendered outside the worker's process (0: inside)
    # WORKER_ROLES: what this worker process does (domain/names.py): the cases (workflows and
    # their activities), agreement rendering, SMS sending; all three by default.
    worker_roles: tuple[str, ...] = ROLES
    # WORKER_CASES_PART: "workflows" or "activities" for a process that polls the cases task
    # queue for that kind of task only (workflow workers sized by their cache, activity
    # workers by the database); None, the default: both.
    cases_part: str | None = None
    sms_threads: int = 8  # SMS sent at once by the sms role (each one HTTP call)
    # WORKER_NICE: a process without the cases role (render and/or sms only) lowers its CPU
    # priority by this much (os.nice), so that on shared cores the cases and the Temporal
    # server come first; 0, the default, leaves it. A process with the cases role ignores it.
    nice: int = 0
    # The cases role's workflow tasks at once and its workflow-task pollers (the SDK's
    # max_concurrent_workflow_tasks and max_concurrent_workflow_task_polls; None: the SDK's).
    workflow_tasks: int | None = None
    workflow_polls: int | None = None
    # WORKER_SANDBOX: shared (workflows/ passed through the sandbox, one import per process)
    # or strict (imported afresh in every run); service/sandbox_code.workflow_runner.
    sandbox: str = SHARED
    # SMS_RATE_PER_SECOND: a little under the provider's rate; the sms task queue hands out this
    # many sends a second at most, whatever the number of sms workers (None: no limit).
    sms_rate_per_second: float | None = None
    # Prometheus (service/metrics.py): the worker's metrics at http://METRICS_ADDRESS/metrics
    # (host:port); the web app's /metrics answers a scraper with `Bearer METRICS_TOKEN`.
    metrics_address: str | None = None
    metrics_token: str | None = None
    # cancel-missing: at most this share (%) of the open cases in scope without --confirm-count
    cancel_max_percent: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            temporal_address=env("TEMPORAL_ADDRESS", "localhost:7233"),
            temporal_namespace=env("TEMPORAL_NAMESPACE", "default"),
            task_queue=env("TEMPORAL_TASK_QUEUE", DEFAULT_TASK_QUEUE),
            tls_cert=env("TEMPORAL_TLS_CERT"),
            tls_key=env("TEMPORAL_TLS_KEY"),
            tls_ca=env("TEMPORAL_TLS_CA"),
            api_key=env("TEMPORAL_API_KEY"),
            db_url=default_url(),
            data_dir=data_dir(),
            policy_file=env("COLLECTION_POLICY_FILE"),
            sms_language=env("SMS_LANGUAGE", "zh"),
            activity_threads=int(env("WORKER_ACTIVITY_THREADS", "16")),
            max_cached_workflows=int(env("WORKER_MAX_CACHED_WORKFLOWS", "1000")),
            pdf_processes=int(env("WORKER_PDF_PROCESSES", "1")),
            worker_roles=parse_roles(env("WORKER_ROLES", "")),
            cases_part=parse_cases_part(env("WORKER_CASES_PART", "")),
            sms_threads=int(env("WORKER_SMS_THREADS", "8")),
            nice=int(env("WORKER_NICE", "0")),
            workflow_tasks=_optional_int(env("WORKER_WORKFLOW_TASKS"), "WORKER_WORKFLOW_TASKS"),
            workflow_polls=_optional_int(env("WORKER_WORKFLOW_POLLS"), "WORKER_WORKFLOW_POLLS"),
            sms_rate_per_second=parse_rate(env("SMS_RATE_PER_SECOND", "")),
            sandbox=parse_sandbox(env("WORKER_SANDBOX", "")),
            metrics_address=env("METRICS_ADDRESS") or None,
            metrics_token=env("METRICS_TOKEN") or None,
            codec_keys=env("COLLECTION_CODEC_KEYS"),
            cancel_max_percent=float(env("COLLECTION_CANCEL_MAX_PERCENT", "10")),
        )

    def __post_init__(self) -> None:
        check_workflow_limits(self.workflow_tasks, self.workflow_polls, self.max_cached_workflows)
        # Refused by name, or normalised, however the settings were made (from_env parses
        # them already): build_worker takes the exact names only.
        self.cases_part = parse_cases_part(self.cases_part or "")
        self.sandbox = parse_sandbox(self.sandbox)
        if self.cases_part is not None and CASES not in self.worker_roles:
            # A process meant to take the cases' workflow (or activity) tasks that takes none.
            raise ValueError(
                f"WORKER_CASES_PART={self.cases_part}: only for a process with the cases role "
                f"(WORKER_ROLES={','.join(self.worker_roles)})"
            )

    def policy(self) -> Policy:
        return load_policy(self.policy_file)


def _optional_int(text: str | None, name: str = "") -> int | None:
    if not text or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}: a whole number, got {text!r}") from None


def check_workflow_limits(tasks: int | None, polls: int | None, cached: int) -> None:
    """WORKER_WORKFLOW_TASKS and WORKER_WORKFLOW_POLLS: with cached workflows (the default,
    WORKER_MAX_CACHED_WORKFLOWS > 0) the SDK needs at least 2 of each (a sticky and a
    normal queue); refused here with the variable's name, not later by the worker."""
    least = 2 if cached > 0 else 1
    for name, value in (("WORKER_WORKFLOW_TASKS", tasks), ("WORKER_WORKFLOW_POLLS", polls)):
        if value is not None and value < least:
            why = (
                "with cached workflows (WORKER_MAX_CACHED_WORKFLOWS > 0) the Temporal SDK "
                "needs at least 2"
                if cached > 0
                else "at least 1"
            )
            raise ValueError(f"{name}={value}: {why}; unset it for the SDK's default")


def parse_rate(text: str) -> float | None:
    """SMS_RATE_PER_SECOND: a positive number of messages a second; empty means no limit."""
    if not text.strip():
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"SMS_RATE_PER_SECOND: a positive number of SMS a second, got {text!r}")
    return rate


def parse_roles(text: str) -> tuple[str, ...]:
    """WORKER_ROLES: a comma list of cases, render and sms; empty means all three."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROLES]
    if unknown:
        raise ValueError(
            f"WORKER_ROLES: unknown role {', '.join(unknown)!r} (roles: {', '.join(ROLES)})"
        )
    return tuple(r for r in ROLES if r in names) or ROLES


def parse_cases_part(text: str) -> str | None:
    """WORKER_CASES_PART: workflows or activities; empty means both (None)."""
    part = text.strip().lower()
    if not part:
        return None
    if part not in CASE_PARTS:
        raise ValueError(
            f"WORKER_CASES_PART: {text.strip()!r} is not a part of the cases role "
            f"({' or '.join(CASE_PARTS)}; unset for both)"
        )
    return part
