"""People read Chinese first: every stage, task kind and visit outcome has a Chinese name."""

from domain.labels import label, zh
from domain.stages import Stage, TaskKind, VisitOutcome


def test_every_stage_task_kind_and_visit_outcome_has_a_chinese_name() -> None:
    for code in [*Stage, *TaskKind, *VisitOutcome]:
        name = zh(code)
        assert name != str(code) and any("\u4e00" <= ch <= "\u9fff" for ch in name), code
        assert label(code) == f"{name} {code}"


def test_a_code_without_a_name_is_shown_as_it_is() -> None:
    assert zh("SOMETHING_NEW") == label("SOMETHING_NEW") == "SOMETHING_NEW"
