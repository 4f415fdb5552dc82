from fsku_kedro.answering.circuit_breaker import CircuitBreaker, scaled_budget
from fsku_kedro.answering.fallback import extractive_answer, overlap_choice
from fsku_kedro.parameters.inference import TimeLimitSettings


def test_overlap_choice_prefers_the_option_found_in_the_context():
    options = {"1": "즉시", "2": "1주 이내", "3": "2주 이내", "4": "1개월 이내"}
    number, confidence = overlap_choice(options, "금융회사는 2주 이내에 처리 결과를 이용자에게 알려야 한다.")
    assert number == 3 and 0.0 < confidence <= 1.0
    assert overlap_choice(options, "") == (1, None), "no overlap at all: the first option, no confidence"


def test_extractive_answer_keeps_the_closest_sentences_in_order():
    passage = "망분리는 내부망과 외부망을 나눈다. 날씨가 맑다. 망분리 예외는 승인을 받아야 한다. 점심은 김밥이다."
    answer = extractive_answer("망분리 예외 요건을 설명하세요", passage, max_sentences=2, max_chars=300)
    assert answer == "망분리는 내부망과 외부망을 나눈다. 망분리 예외는 승인을 받아야 한다."
    assert extractive_answer("질문", "", max_sentences=2, max_chars=10) == "질문", "no passage: the question's own words"


def test_extractive_answer_keeps_sentences_whole_across_words_ending_in_da():
    # "2년마다" and "다음" end in 다 but end no sentence; a numbered heading line is one piece.
    passage = ("3. 야간 전송 제한\n수신 동의를 받은 자는 2년마다 수신 동의 여부를 확인하여야 한다. "
               "다음 날 오전 8시까지는 전송할 수 없다.")
    answer = extractive_answer("수신 동의 여부 확인 주기는?", passage, max_sentences=1, max_chars=300)
    assert answer == "수신 동의를 받은 자는 2년마다 수신 동의 여부를 확인하여야 한다."
    assert extractive_answer("야간 전송 제한", passage, max_sentences=1, max_chars=300) == "3. 야간 전송 제한"


def test_budget_scales_with_the_set_and_the_breaker_opens_when_spent():
    limits = TimeLimitSettings()  # the competition's 270 minutes for 515 questions
    assert scaled_budget(515, limits.budget_minutes, limits.budget_questions) == 270 * 60
    assert scaled_budget(103, limits.budget_minutes, limits.budget_questions) == 270 * 60 / 5
    breaker = CircuitBreaker(per_question_s=2.0, budget_s=10.0, spent_s=4.0)
    assert breaker.deadline(8) == 6.0, "a batch may use its limits only within what is left"
    assert breaker.over_limit(17.0, 8) and not breaker.over_limit(15.0, 8)
    breaker.charge(6.0)
    assert breaker.is_open() and breaker.deadline(1) == 0.0
