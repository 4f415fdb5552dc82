"""Prompt set, pairs and user data of the response_generation pipeline, plus the pipeline's shape."""

import json

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import DatasetError, Version
from kedro.runner import SequentialRunner

from fsku_kedro.datasets import AtomicArrowDataset, UserInstructionsDataset
from fsku_kedro.generation.pairs import build_pairs
from fsku_kedro.parameters.generation import BackendSettings, RoleGenerationSettings, SamplingSettings
from fsku_kedro.parameters.response_generation import (
    PairSettings,
    PromptSetSettings,
    ResponseGenerationSettings,
    SyntheticQASettings,
)
from fsku_kedro.parameters.student_shape import StudentShapeSettings
from fsku_kedro.pipelines.response_generation import create_pipeline
from fsku_kedro.pipelines.response_generation.nodes import build_prompt_set, prompt_id
from tests.conftest import PROJECT_ROOT, sample_set, settings_params
from tests.pipelines.test_knowledge_base import KeptDataset

TEMPLATES = {p.stem: p.read_text for p in (PROJECT_ROOT / "data/01_raw/prompts").glob("*.txt")}
PROMPT_SET = PromptSetSettings(validation_share=0.25)
NO_CHUNKS = pd.DataFrame(columns=["chunk_id", "section", "chunk_type", "content"])


def sample_questions():
    return sample_set()[0]


def no_user_data():
    return pd.DataFrame(columns=["prompt", "reference", "line"])


def test_prompt_set_is_never_empty_and_splits_cleanly():
    synthetic = pd.DataFrame(
        [
            {"qa_id": "q1", "question_type": "multiple_choice", "question": "등록 자본금은?", "answer": "2",
             "choices": {"1": "1억 원", "2": "3억 원", "3": "5억 원", "4": "7억 원"}, "keywords": [],
             "context_chunk_ids": ["c1"], "teacher_model": "t", "overall_quality_score": 8.0,
             "difficulty_level": "medium", "student_loss": None},
        ]
    )
    users = pd.DataFrame({"prompt": ["망분리를 설명하세요.", "망분리를 설명하세요.  "], "reference": ["", ""],
                          "line": [1, 2]})
    prompts, split = build_prompt_set(synthetic, NO_CHUNKS, sample_questions(), users, TEMPLATES, PROMPT_SET)
    assert prompts["prompt_id"].is_unique, "duplicates (up to spacing) are removed"
    assert set(prompts["source"]) == {"synthetic", "sample", "user"}
    n_sample = (prompts["source"] == "sample").sum()
    assert 0 < n_sample < len(sample_questions()), "only the sample questions' train split joins"
    assert list(split.columns) == ["ID", "split"] and set(split["split"]) == {"train", "held_out"}
    assert (split["split"] == "train").sum() == n_sample and len(split) == len(sample_questions())
    assert set(prompts["split"]) == {"train", "validation"}
    synthetic_prompt = prompts[prompts.source == "synthetic"]["prompt"].item()
    assert "등록 자본금은?\n1 1억 원\n2 3억 원" in synthetic_prompt, "items are written in the competition format"
    again, split_again = build_prompt_set(synthetic, NO_CHUNKS, sample_questions(), users, TEMPLATES, PROMPT_SET)
    pd.testing.assert_frame_equal(prompts, again)
    pd.testing.assert_frame_equal(split, split_again)
    only_samples, _ = build_prompt_set(synthetic.iloc[0:0], NO_CHUNKS, sample_questions(), no_user_data(), TEMPLATES,
                                       PROMPT_SET)
    assert len(only_samples) == n_sample
    by_prompt = only_samples.groupby("prompt")["split"].nunique()
    assert (by_prompt == 1).all()


def test_descriptive_questions_from_the_knowledge_base_join_the_prompt_set():
    chunks = pd.DataFrame({"chunk_id": ["c1", "c2", "c3"], "chunk_type": ["article", "body", "title"],
                           "section": ["전자금융거래법 제8조(오류의 정정 등)", "안내서 > 2. 접근통제 모델", "안내서"],
                           "content": ["이용자는 오류를 안 때 정정을 요구할 수 있다.", "역할 기반 접근통제를 쓴다.", "안내서"]})
    settings = PromptSetSettings(validation_share=0.25, corpus_descriptive=5)
    prompts, _ = build_prompt_set(pd.DataFrame(columns=["qa_id"]), chunks, sample_questions(), no_user_data(),
                                  TEMPLATES, settings)
    corpus = prompts[prompts["source"] == "corpus"]
    assert len(corpus) == 2 and set(corpus["question_type"]) == {"descriptive"}
    head = TEMPLATES["answer_descriptive"]().split("$question")[0]
    assert all(prompt.startswith(head) for prompt in corpus["prompt"]), "in the descriptive answer template"
    article = corpus[corpus["prompt"].str.contains("오류의 정정")]
    assert article["reference"].item() == "이용자는 오류를 안 때 정정을 요구할 수 있다.", "the section's text"
    without, _ = build_prompt_set(pd.DataFrame(columns=["qa_id"]), chunks, sample_questions(), no_user_data(),
                                  TEMPLATES, PROMPT_SET)
    assert "corpus" not in set(without["source"]), "none by default"


def _responses(prompts, texts, tokens=10):
    return pd.DataFrame(
        [{"prompt_id": pid, "prompt": p, "response": t, "prompt_tokens": tokens, "completion_tokens": tokens}
         for pid, p, t in zip(prompts["prompt_id"], prompts["prompt"], texts)]
    )


def test_pairs_edge_cases():
    texts = [f"질문 {i}" for i in range(7)]
    prompts = pd.DataFrame({"prompt_id": [prompt_id(t) for t in texts], "prompt": texts,
                            "split": ["train"] * 5 + ["validation"] * 2})
    teacher = _responses(prompts, ["교사 답"] * 7)
    student = _responses(prompts, ["학생 답"] * 7)
    student.loc[1, "response"] = "   "                       # empty generation
    teacher.loc[2, ["prompt_tokens", "completion_tokens"]] = [900, 300]  # over length
    student.loc[3, "prompt"] = "다른 질문"                     # same id, different prompt text
    teacher = teacher.drop(index=4)                             # student only
    student = student.drop(index=6)                             # teacher only
    dataset, report, metrics = build_pairs(prompts, teacher, student, PairSettings())
    counts = dict(zip(report["outcome"], report["pairs"]))
    assert counts == {"empty generation": 1, "over length": 1, "prompt text mismatch": 1, "student only": 1,
                      "teacher only": 1, "pairs train": 1, "pairs validation": 1}
    assert metrics["pairs.over_length"]["value"] == 1.0
    row = dataset["train"][0]
    assert row["prompt"] == [{"role": "user", "content": "질문 0"}]
    assert row["chosen"] == [{"role": "assistant", "content": "교사 답"}]
    assert row["rejected"] == [{"role": "assistant", "content": "학생 답"}]
    assert dataset["validation"][0]["prompt_id"] == prompts["prompt_id"][5]


def test_pairs_fail_clearly_when_nothing_is_left():
    prompts = pd.DataFrame({"prompt_id": ["a"], "prompt": ["질문"], "split": ["train"]})
    with pytest.raises(ValueError, match="no usable training pair"):
        build_pairs(prompts, _responses(prompts, [""]), _responses(prompts, ["x"]), PairSettings(max_total_tokens=100))


def test_pair_dataset_round_trip(tmp_path):
    texts = ["가", "나"]
    prompts = pd.DataFrame({"prompt_id": [prompt_id(t) for t in texts], "prompt": texts, "split": ["train"] * 2})
    dataset, _, _ = build_pairs(prompts, _responses(prompts, ["a", "b"]), _responses(prompts, ["c", "d"]),
                                PairSettings(max_total_tokens=100))
    store = AtomicArrowDataset(path=str(tmp_path / "pairs"), version=Version(None, None))
    store.save(dataset)
    loaded = AtomicArrowDataset(path=str(tmp_path / "pairs"), version=Version(None, None)).load()
    assert loaded["train"].to_list() == dataset["train"].to_list()
    saved = [path.name for path in (tmp_path / "pairs").glob("*/*")]
    assert saved == ["pairs"], "one version folder holding the saved dict, no staging folder left"


def test_user_instructions_skip_and_count_bad_rows(tmp_path):
    path = tmp_path / "extra.jsonl"
    lines = [json.dumps({"instruction": "암호키 관리 원칙을 설명하세요.", "output": "분리 보관"}, ensure_ascii=False),
             "{not json", json.dumps({"text": "프롬프트 없음"}, ensure_ascii=False), "[1, 2]"]
    path.write_bytes(("\n".join(lines) + "\n").encode() + "망분리".encode("cp949") + b"\n")
    frame = UserInstructionsDataset(filepath=str(path)).load()
    assert frame["prompt"].tolist() == ["암호키 관리 원칙을 설명하세요."] and frame["reference"].tolist() == ["분리 보관"]
    skipped = frame.attrs["skipped"]
    assert len(skipped) == 4 and any("line 2: malformed JSON" in s for s in skipped)
    assert any("line 5: not decodable" in s for s in skipped)
    csv_path = tmp_path / "extra.csv"
    csv_path.write_bytes("prompt,reference\n전자서명의 효력은?,\n".encode("cp949"))
    assert UserInstructionsDataset(filepath=str(csv_path)).load()["prompt"].tolist() == ["전자서명의 효력은?"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"no usable instruction in .*bad.jsonl"):
        UserInstructionsDataset(filepath=str(bad)).load()
    assert UserInstructionsDataset(filepath=str(tmp_path / "absent.jsonl")).load().empty


def test_generation_is_one_template_under_two_namespaces():
    nodes = {node.name: node for node in create_pipeline().nodes}
    assert {"teacher.generate_responses", "student.generate_responses"} <= set(nodes)
    assert nodes["teacher.generate_responses"].inputs == [
        "prompt_set", "teacher_model", "teacher.response_store", "params:teacher.generation"]
    assert nodes["student.generate_responses"].outputs == ["student.responses"]


def test_pipeline_runs_on_tiny_models(tiny_llama_dir, tmp_path):
    from fsku_kedro.datasets import PretrainedModelDataset, ResponseStoreDataset

    chunks = pd.DataFrame({"chunk_id": ["c1", "c2"], "chunk_type": ["body", "article"],
                           "content": ["망분리는 업무망과 인터넷망을 나누는 통제이다.", "접근매체 분실 시 즉시 신고한다."]})
    # Sampling: a random tiny model's greedy choice is often a lone newline, an empty answer.
    generation = RoleGenerationSettings(batch_size=4, max_new_tokens=6, do_sample=True)
    data = {
        "chunks": chunks,
        "teacher_model": PretrainedModelDataset(source=str(tiny_llama_dir), name="tiny-teacher").load(),
        "student_source": PretrainedModelDataset(source=str(tiny_llama_dir), name="tiny").load(),
        "params:student_shape": StudentShapeSettings(layers=2),
        "prompt_templates": TEMPLATES,
        "sample_questions": sample_questions(),
        "test_questions": sample_questions(),
        "fsku_benchmark_mc": pd.DataFrame(columns=["Question"]),
        "fsku_benchmark_descriptive": pd.DataFrame(columns=["Question"]),
        "user_instructions": no_user_data(),
        **settings_params("response_generation", ResponseGenerationSettings(
            synthetic_qa=SyntheticQASettings(
                max_chunks=2, multiple_choice_share=0.5, backend=BackendSettings(batch_size=4),
                writer=SamplingSettings(max_new_tokens=8, do_sample=True), judge=SamplingSettings(max_new_tokens=2)),
            prompt_set=PROMPT_SET,
        )),
        "params:teacher.generation": generation,
        "params:student.generation": generation,
    }
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in data.items()})
    catalog["student_source"] = KeptDataset(data["student_source"], copy_mode="assign")
    catalog["student_model"] = KeptDataset(copy_mode="assign")
    for side in ("teacher", "student"):
        catalog[f"{side}.response_store"] = ResponseStoreDataset(str(tmp_path / f"{side}.jsonl"))
    catalog["synthetic_qa_progress"] = ResponseStoreDataset(str(tmp_path / "synthetic_qa.jsonl"))
    SequentialRunner().run(create_pipeline(), catalog)
    answered = [json.loads(line) for line in (tmp_path / "teacher.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {record["model"] for record in answered} == {"tiny-teacher"}
    student = catalog.load("student_model")
    assert student.name == "tiny-depth2" and student.model.config.num_hidden_layers == 2, "derived by its node"
    assert catalog.load("student_source").model.config.num_hidden_layers == 4, "the source is left whole"
    assert len((tmp_path / "synthetic_qa.jsonl").read_text(encoding="utf-8").splitlines()) == 2  # each plan's outcome
    report = catalog.load("pair_report").set_index("outcome")["pairs"]
    assert report["pairs train"] + report.get("pairs validation", 0) + report.get("empty generation", 0) == len(answered)
    assert catalog.load("pair_dataset")["train"].column_names == ["prompt_id", "prompt", "chosen", "rejected"]
    assert catalog.load("synthetic_qa_report")["items"].sum() == 2, "both planned items are accounted for"


def test_decontamination_drops_planted_near_copies_and_names_what_they_copy():
    from fsku_kedro.parameters.response_generation import DecontaminationSettings
    from fsku_kedro.pipelines.response_generation.nodes import decontaminate

    questions = sample_questions()
    _, split = build_prompt_set(pd.DataFrame(columns=["qa_id"]), NO_CHUNKS, questions, no_user_data(), TEMPLATES,
                                PROMPT_SET)
    held_out = set(split.loc[split["split"] == "held_out", "ID"])
    held = max((q for q in questions if q.ID in held_out), key=lambda q: len(q.parsed_question))
    fsku = pd.DataFrame({"Question": ["전자금융거래법상 전자금융업자가 이용자에게 제공해야 하는 약관의 명시 의무에 관한 설명으로 옳지 않은 것은?\n"
                                      "1 약관을 게시한다\n2 설명한다\n3 교부한다\n4 숨긴다"]})
    copied_stem = held.parsed_question.replace("은", "는", 1)  # a particle changed
    users = pd.DataFrame({"prompt": [
        f"다음 문제를 풀어라. {copied_stem}",
        "전자금융업자가 이용자에게 제공해야 하는 약관의 명시 의무에 관한 설명으로 옳지 않은 것은? 답만 쓰시오.",
        "클라우드 컴퓨팅 서비스의 보안 인증 제도를 한국어로 자세히 설명하세요.",
    ], "reference": ["", "", ""], "line": [1, 2, 3]})
    candidates, split = build_prompt_set(pd.DataFrame(columns=["qa_id"]), NO_CHUNKS, questions, users, TEMPLATES,
                                         PROMPT_SET)
    clean, report, metrics = decontaminate(candidates, questions, split, questions, fsku, pd.DataFrame(),
                                           DecontaminationSettings())
    matched = dict(zip(report["evaluation_set"], report["evaluation_id"]))
    assert set(report["source"]) == {"user"} and len(report) == 2
    assert matched == {"sample_held_out": held.ID, "fsku_benchmark": "FSKU_MC_0000"}
    assert (report["containment"] >= 0.5).all()
    assert (clean["source"] == "sample").sum() == (candidates["source"] == "sample").sum(), (
        "the sample questions trained on are not evaluation items, though test.csv is the sample file")
    assert "클라우드 컴퓨팅" in " ".join(clean["prompt"]), "an unrelated instruction is kept"
    assert metrics["decontamination.dropped"]["value"] == 2.0
    assert metrics["decontamination.matched.fsku_benchmark"]["value"] == 1.0
