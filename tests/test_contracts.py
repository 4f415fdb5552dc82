import pytest

from fsku_kedro.contracts import (
    CompetitionQuestion,
    DataContractError,
    LabelledAnswer,
    SubmissionRow,
    SyntheticQAPair,
    validate_records,
)


def test_validate_records_names_file_row_and_field():
    rows = [
        {"ID": "A", "answer": "1", "confidence": 0.5, "inference_time": 0.1, "used_fallback": False,
         "question_type": "multiple_choice", "method": "choice_scoring"},
        {"ID": "B", "answer": "", "confidence": 1.5, "inference_time": 0.1, "used_fallback": False,
         "question_type": "multiple_choice", "method": "choice_scoring"},
    ]
    with pytest.raises(DataContractError) as error:
        validate_records(rows, SubmissionRow, source="answers.csv", first_row_number=2)
    message = str(error.value)
    assert "answers.csv: row 3: answer" in message
    assert "answers.csv: row 3: confidence" in message
    assert "row 2" not in message


def test_valid_rows_become_records():
    records = validate_records(
        [{"ID": "A", "answer": "3", "confidence": 0.9, "inference_time": 0.2, "used_fallback": True,
          "question_type": "multiple_choice", "method": "fallback_overlap", "fallback_reason": "time_limit"}],
        SubmissionRow,
        source="x",
    )
    assert records[0].used_fallback is True and records[0].answer == "3"
    assert records[0].fallback_reason == "time_limit"


def test_multiple_choice_answer_must_be_an_option():
    base = dict(
        qa_id="q1",
        question_type="multiple_choice",
        question="무엇인가?",
        choices={"1": "가", "2": "나", "3": "다", "4": "라"},
        context_chunk_ids=["c1"],
        teacher_model="t",
        overall_quality_score=8.0,
    )
    assert SyntheticQAPair(answer="2", **base).answer == "2"
    with pytest.raises(ValueError, match="not one of the options"):
        SyntheticQAPair(answer="5", **base)


def test_question_options_must_be_numbered_from_one():
    with pytest.raises(ValueError, match="numbered 1..2"):
        CompetitionQuestion(ID="T", Question="q", question_type="multiple_choice", parsed_question="q",
                            choices={"2": "a", "3": "b"})


def test_labelled_answer_splits_keywords_and_rejects_unknown_fields():
    label = LabelledAnswer(ID="T", question_type="descriptive", answer="설명", keywords="망분리; 예외 ;",
                           source="a.md", evidence="망분리", domain="정보보안")
    assert label.keywords == ["망분리", "예외"]
    with pytest.raises(ValueError):
        LabelledAnswer(ID="T", question_type="descriptive", answer="a", source="a", evidence="e", domain="d",
                       extra="x")
