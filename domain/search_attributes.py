"""Custom search attributes of a case: what supervisors filter on in Temporal visibility.

They are stored unencrypted on the server, so none of them carries personal data.
"""

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("CollectionStage")
BRANCH = SearchAttributeKey.for_keyword("Branch")
COLLECTOR = SearchAttributeKey.for_keyword("CollectorId")
RISK_TIER = SearchAttributeKey.for_keyword("RiskTier")
# Released cases only (refreshed when the case changed, so stale on quiet cases); collection-v4
# unsets it and keeps the date instead, from which days past due follow at query time.
DAYS_PAST_DUE = SearchAttributeKey.for_int("DaysPastDue")
OVERDUE_SINCE = SearchAttributeKey.for_datetime("OverdueSince")  # local midnight, no PII
OUTSTANDING_FEN = SearchAttributeKey.for_int("OutstandingFen")
NEXT_ACTION_AT = SearchAttributeKey.for_datetime("NextActionAt")
# The strategy arm, "segment/CHAMPION" or "segment/CHALLENGER" (collection-v4 runs only).
STRATEGY = SearchAttributeKey.for_keyword("Strategy")

ALL = (
    STAGE,
    BRANCH,
    COLLECTOR,
    RISK_TIER,
    DAYS_PAST_DUE,
    OUTSTANDING_FEN,
    NEXT_ACTION_AT,
    OVERDUE_SINCE,
    STRATEGY,
)

_CLI_TYPES = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}  # IndexedValueType names


def dev_server_args() -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    args: list[str] = []
    for key in ALL:
        kind = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")
        args += ["--search-attribute", f"{key.name}={_CLI_TYPES[kind]}"]
    return args
