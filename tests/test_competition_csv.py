"""test.csv as users hand it over: BOM or not, CRLF, cp949 / euc-kr; clear errors otherwise."""

import pytest
from kedro.io.core import DatasetError

from fsku_kedro.datasets import CompetitionCSVDataset
from fsku_kedro.questions import parse_test_table
from fsku_kedro.text_decoding import decode_korean_text

TEXT = 'ID,Question\nTEST_000,"기한은?\n1 즉시\n2 2주 이내"\nTEST_001,제3조의 취지를 설명하세요.\n'


@pytest.mark.parametrize(
    ("encoding", "newline"),
    [("utf-8-sig", "\n"), ("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("cp949", "\r\n"), ("euc-kr", "\n")],
)
def test_encodings_and_line_endings_read_the_same(tmp_path, encoding, newline):
    path = tmp_path / "test.csv"
    path.write_bytes(TEXT.replace("\n", newline).encode(encoding))
    frame = CompetitionCSVDataset(str(path), columns=["ID", "Question"]).load()
    assert list(frame.columns) == ["ID", "Question"]
    assert frame.loc[0, "Question"] == "기한은?\n1 즉시\n2 2주 이내", "no \\r left inside a cell"
    questions = parse_test_table(frame, str(path))
    assert questions[0].choices == {"1": "즉시", "2": "2주 이내"} and questions[1].question_type == "descriptive"
    assert frame.attrs["encoding"] == ("cp949" if encoding in ("cp949", "euc-kr") else "utf-8")


def test_euc_kr_reads_as_cp949_its_superset():
    text = "전자금융거래법 제9조: 접근매체의 위조"
    assert decode_korean_text(text.encode("euc-kr")) == (text, "cp949")
    assert decode_korean_text(text.encode("cp949")) == (text, "cp949")
    assert decode_korean_text(text.encode("utf-8")) == (text, "utf-8-sig")
    with pytest.raises(UnicodeDecodeError):
        decode_korean_text(b"\xff\xfe\xff")


def test_missing_columns_and_undecodable_bytes_name_the_file(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("id,text\nA,x\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"test.csv: missing column\(s\) \['ID', 'Question'\]"):
        CompetitionCSVDataset(str(path), columns=["ID", "Question"]).load()
    path.write_bytes(b"ID,Question\nA,\xff\xfe\xff\n")
    with pytest.raises(DatasetError, match="test.csv: line 2: bytes that are neither UTF-8 nor cp949"):
        CompetitionCSVDataset(str(path), columns=["ID", "Question"]).load()


def test_optional_file_loads_empty_and_required_file_fails(tmp_path):
    absent = tmp_path / "labels.csv"
    frame = CompetitionCSVDataset(str(absent), columns=["ID", "answer"], optional=True).load()
    assert frame.empty and list(frame.columns) == ["ID", "answer"] and frame.attrs["missing"]
    with pytest.raises(DatasetError, match="no such file"):
        CompetitionCSVDataset(str(absent), columns=["ID"]).load()
