"""Released versions of the case's behaviour: each a `workflow.patched` marker, decided once
per run at its first use. Recorded histories of every version replay in tests/test_replay.py.
"""

from __future__ import annotations

from temporalio import workflow

# The second version (one patch, one marker per case):
# - a wait always starts its timer, even when its deadline has just passed (replay after a
#   timed-out workflow task must see the same commands; tests/test_faults.py);
# - search attributes are upserted once before the workflow next waits, not at each change,
#   and are inherited across continue-as-new;
# - a case paid in full at an installment-cycle boundary closes in the same run.
PATCH_V2 = "collection-v2"
# The third: at an installment-cycle boundary the case continues as new only once its run's
# history is long (RUN_EVENTS_BEFORE_NEW_RUN, or the server suggests it), not at every
# boundary. A cycle is ~30 events, so a run holds ~10 installments: the history stays short
# enough to replay quickly after a cache eviction, with a tenth of the runs (and of the
# sandbox set-ups and state transfers that each new run costs).
PATCH_V3 = "collection-v3"
RUN_EVENTS_BEFORE_NEW_RUN = 500
# The fourth (issue 13):
# - a new case has a generation (its first run's id) in every idempotency key, so a case
#   started again after a failed or terminated run is not silently skipped by the database;
# - an SMS that waited (quiet hours, caps) is checked again before it goes: a reminder for an
#   installment paid meanwhile is not sent, and texts quote what remains, not the full amount;
# - resuming a field visit after a hardship hold keeps the round's visit counters (and sends
#   no second visit notice), so repeated holds cannot keep a case from its dead end;
# - a visit report or a signature changes the case before its record is written, so a
#   deadline firing meanwhile cannot make the caller's "accepted" untrue.
# - (issue 18) the case keeps the date it fell overdue as the OverdueSince search attribute
#   and unsets DaysPastDue, which went stale on quiet cases.
PATCH_V4 = "collection-v4"
# A run that a released version began learns OverdueSince from the first export's debt
# update that reaches it (its own marker: the run's answer to PATCH_V4 was already given).
PATCH_OVERDUE_SINCE = "collection-v4-overdue-since"
# The fifth (issue 17, what a case costs on Temporal Cloud: timers and search-attribute
# upserts are billed Actions), asked when the run starts:
# - a wait whose deadline is that of the timer still running from the previous wait keeps
#   that timer (a payment ends the follow-up's wait, and the next wait is for the same
#   revisit): the timer is cancelled only when a wait with another deadline starts or the
#   case changes stage. Every deadline fires when it did before;
# - search attributes are upserted once the case is idle (no activity in flight, the
#   workflow task's other changes made), not before each activity: a chain of activities and
#   the wait after it give one upsert, with the values the case keeps while it waits. A new
#   stage is the exception: it is upserted (with the other pending changes) before the next
#   activity is scheduled, so a case whose activity retries through an outage (an SMS
#   provider down for hours) is found under its stage meanwhile; one upsert per stage. A
#   new case starts knowing the stage and branch its starter set (service/case_start.py), so
#   it upserts nothing until they change;
# - OutstandingFen changes only with a stage change (and when the case ends): the lists take
#   the exact amount from the case row (service/portfolio.py), which every activity
#   recording a money change (payment, payment taken back, debt update, waiver, stage
#   change) writes with the workflow time it is as of (only a newer one overwrites).
PATCH_V5 = "collection-v5"
# The sixth (issue 17, continued), asked when the run starts, only by runs with the fifth:
# - an activity a person waits on, scheduled inside an Update handler (the visit report's
#   record_visit, the signature's, the call's, the check-in's training check, ...), has the
#   highest task priority in its queue (domain/case_rules.INTERACTIVE_PRIORITY): it goes
#   before the back office's backlog, so the collector's "accepted" does not wait for it.
#   Background activities keep the default (the SMS sends their bands by days past due).
# - the next action goes on the case row (cases.next_action/next_action_at, migration 0020)
#   with the activity before each wait, not in the NextActionAt search attribute: the stage
#   passes the wait that follows to its task (`then`), the follow-up and a hold say theirs
#   in advance (case.EXPECTED) for a payment's record, the revisit's task and the stage
#   change, and an installment's reminder passes the installment's wait to its send (the
#   send activity writes it once the message is done, not when deferred). Each write has
#   the workflow time it is as of (only a newer one overwrites, as the outstanding amount).
#   NextActionAt is unset while the row has the current wait's next action (its activity
#   done), and set (upserted as before) for a wait nothing wrote ahead (an SMS held for
#   the contact window). The lists, the dashboard's "overdue"
#   and "due today" filters, the export, the CLI and the collector's page take the row's
#   time for a case whose attribute is unset, the attribute's otherwise (a released run's
#   row is written at stage changes only): service/portfolio.py find_cases. The status
#   Query is unchanged; a 12-installment case upserts once per stage (6; 15–16 with the
#   fifth), whether each installment is paid before or after its reminder. A case started
#   again (a new generation, a run without state) trusts no row it did not write: its
#   first stage change writes the row. Known limit: after a workflow *reset* the new run
#   replays the old run's confirmed writes, so it believes the row holds what it held at
#   the reset point while the abandoned run may have written a later next action (the
#   SDK tells a workflow nothing of a reset): until the new run's next activity writes the
#   row, the lists may show the abandoned run's next action;
# - a wait keeps the running timer of an earlier deadline (across stage changes too) and
#   starts one for the rest only if that timer fires first: a wait that ends before it (a
#   plan or signature soon after its wait began, a payment) starts none, one that lasts
#   starts one as before. Every deadline fires when it did; the case wakes once more at
#   the kept timer's time (a workflow task, not an Action). 9 timers whatever the races
#   (9–11 with the fifth): 68 Actions against the trivial workflow's 53 (1.28);
# - the activities that enforce the case's rules again (send_sms, assess_case, record_visit,
#   render_agreement) get its policy as the changes against a frozen, named base
#   (domain/policy_wire.py: a few fields instead of ~2 KB of JSON each), not whole; they
#   rebuild the exact policy and enforce it as before, and still take a whole one;
# - a search-attribute upsert names only the attributes that changed, not all of them (the
#   server keeps the others: the same values in visibility, fewer bytes in the history).
PATCH_V6 = "collection-v6"


class Versions:
    """Which patches apply to this run. `workflow.patched` is called at the first question,
    never earlier, so the marker lands where the released code put it."""

    def __init__(self) -> None:
        self._v2: bool | None = None
        self._v3: bool | None = None
        self._v4: bool | None = None
        self._v5: bool | None = None
        self._v6: bool | None = None

    def v2(self) -> bool:
        if self._v2 is None:
            self._v2 = workflow.patched(PATCH_V2)
        return self._v2

    def v3(self) -> bool:
        if self._v3 is None:
            self._v3 = workflow.patched(PATCH_V3)
        return self._v3

    def v4(self) -> bool:
        if self._v4 is None:
            self._v4 = workflow.patched(PATCH_V4)
        return self._v4

    def v5(self) -> bool:
        if self._v5 is None:
            self._v5 = workflow.patched(PATCH_V5)
        return self._v5

    def v6(self) -> bool:
        if self._v6 is None:
            self._v6 = self.v5() and workflow.patched(PATCH_V6)
        return self._v6

    def answered_v6(self) -> bool:
        """PATCH_V6's answer if the run has asked it already, else False (never asks)."""
        return self._v6 is True

    def overdue_since_late(self) -> bool:
        """PATCH_OVERDUE_SINCE, asked only from a message handler of a released run."""
        return workflow.patched(PATCH_OVERDUE_SINCE)

    def run_has_room(self) -> bool:
        """Whether the next installment cycle may run in this run (PATCH_V3)."""
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return False
        return self.v3() and info.get_current_history_length() < RUN_EVENTS_BEFORE_NEW_RUN
