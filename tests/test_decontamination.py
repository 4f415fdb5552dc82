"""The two decontamination rules on the ways a benchmark question is copied into training prompts."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from fsku_kedro.generation.decontamination import (
    ContaminationIndex,
    EvaluationItem,
    StemRule,
    substring_edits,
)
from fsku_kedro.parameters.response_generation import DecontaminationSettings

TEMPLATE = "다음 금융보안 객관식 문제의 정답 번호를 고르고, 그 이유를 한두 문장으로 설명하세요.\n\n{}"
BENCHMARK = [
    ("다음 중 전자금융거래법상 접근매체에 해당하지 않는 것은?",
     ["전자식 카드", "공인인증서", "이용자 생체정보", "금융회사 직원의 사원증"]),
    ("개인정보 보호법에서 정하는 민감정보의 처리 요건으로 가장 적절한 것은?",
     ["정보주체의 별도 동의", "구두 통지", "사후 공고", "처리 후 파기"]),
    ("전자서명의 효력에 대한 설명으로 옳지 않은 것은?",
     ["서명자의 신원을 확인한다", "서명 후 변경 여부를 확인한다", "종이 문서와 같다", "효력이 전혀 없다"]),
]


def question(stem: str, options: list[str]) -> str:
    return "\n".join([stem] + [f"{n} {text}" for n, text in enumerate(options, start=1)])


def index(settings: DecontaminationSettings | None = None) -> ContaminationIndex:
    settings = settings or DecontaminationSettings()
    items = [EvaluationItem("fsku_benchmark", f"FSKU_MC_{n:04d}", question(stem, options))
             for n, (stem, options) in enumerate(BENCHMARK)]
    return ContaminationIndex(items, settings.ngram, settings.min_containment, settings.min_shared,
                              StemRule(settings.stem_max_edit_share, settings.stem_min_chars))


def test_substring_edits_is_the_least_levenshtein_distance_to_any_substring():
    rng = random.Random(0)
    for _ in range(200):
        needle = "".join(rng.choice("가나다ab") for _ in range(rng.randint(1, 7)))
        haystack = "".join(rng.choice("가나다ab") for _ in range(rng.randint(0, 10)))
        expected = min(Levenshtein.distance(needle, haystack[i:j])
                       for i in range(len(haystack) + 1) for j in range(i, len(haystack) + 1))
        assert substring_edits(needle, haystack) == expected, (needle, haystack)


@pytest.mark.parametrize("kind", ["options shuffled", "another question's options", "stem alone",
                                  "particle changed", "particle changed, stem alone"])
def test_each_kind_of_copy_is_caught_and_names_the_copied_question(kind):
    stem, options = BENCHMARK[0]
    changed = stem.replace("접근매체에", "접근매체가")  # one particle changed
    text = {
        "options shuffled": question(stem, options[::-1]),
        "another question's options": question(stem, BENCHMARK[1][1]),
        "stem alone": stem,
        "particle changed": question(changed, options[1:] + options[:1]),
        "particle changed, stem alone": changed,
    }[kind]
    found = index().match(TEMPLATE.format(text))
    assert found is not None, f"{kind}: not caught"
    assert found.item.item_id == "FSKU_MC_0000" and found.rule == "stem"
    assert found.stem_edits == (1 if "particle" in kind else 0)


def test_the_whole_item_rule_still_catches_a_copy_whose_stem_is_too_short_to_match_alone():
    settings = DecontaminationSettings(stem_min_chars=100)  # no stem is long enough here
    stem, options = BENCHMARK[2]
    found = index(settings).match(TEMPLATE.format(question(stem, options)))
    assert found is not None and found.rule == "item" and found.item.item_id == "FSKU_MC_0002"
    assert found.containment >= settings.min_containment and found.stem_edits is None


def test_questions_on_the_same_topic_written_from_the_corpus_are_kept():
    kept = [
        # the same law and answer style, another question
        "다음 중 전자금융거래법상 접근매체의 관리 의무에 관한 설명으로 옳은 것은?\n1 양도할 수 있다\n2 대여할 수 없다",
        # four edits from a stem of 20 characters (the rule allows 12 % of it, 2 edits): another question
        "전자문서의 효력에 대한 설명으로 옳은 것은?",
        # a generic stem shorter than stem_min_chars, inside a longer text
        TEMPLATE.format("다음 중 옳지 않은 것은?\n1 전자식 카드\n2 사원증"),
    ]
    assert index().match_all(kept) == [None, None, None]


def test_a_stem_longer_than_the_prompt_is_not_found_in_it():
    assert index().match("전자서명의 효력") is None, "a prompt that is a fragment of a stem is no copy of it"
