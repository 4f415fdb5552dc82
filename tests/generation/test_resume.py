"""Generation survives a kill: a restarted run loses nothing and regenerates nothing finished."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import torch

from fsku_kedro.generation.responses import generate_responses
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.models import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.generation import RoleGenerationSettings
from fsku_kedro.pipelines.response_generation.nodes import prompt_id

PARAMETERS = RoleGenerationSettings(batch_size=2, max_new_tokens=48)
PROMPTS = [f"질문 {i}: 전자금융거래에서 {'접근매체 ' * (i % 5)}관리 의무를 설명하세요." for i in range(30)]

CHILD = textwrap.dedent(
    """
    import json
    import sys
    import pandas as pd
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.models import ModelBundle
    from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
    from fsku_kedro.generation.responses import generate_responses
    from fsku_kedro.parameters.generation import RoleGenerationSettings
    model_dir, prompts_file, store_file, parameters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    bundle = ModelBundle(load_causal_lm(model_dir), load_tokenizer(model_dir), "tiny")
    settings = RoleGenerationSettings.model_validate_json(parameters)
    generate_responses(pd.read_parquet(prompts_file), bundle, ResponseStore(store_file), settings)
    """
)


def _prompt_set() -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": [prompt_id(p) for p in PROMPTS], "prompt": PROMPTS})


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_killed_run_resumes_without_loss_or_rework(tmp_path, tiny_llama_dir):
    prompts_file = tmp_path / "prompts.parquet"
    _prompt_set().to_parquet(prompts_file)
    store_file = tmp_path / "progress.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tiny_llama_dir), str(prompts_file), str(store_file), PARAMETERS.model_dump_json()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600  # generous: the machine may be busy
    while time.time() < deadline and child.poll() is None:
        if store_file.exists() and len(store_file.read_bytes().splitlines()) >= 6:
            break
        time.sleep(0.005)
    assert child.poll() is None, "the child finished before it could be killed; make the work longer"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before_restart = _lines(store_file)
    assert 6 <= len(before_restart) < len(PROMPTS)

    bundle = ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny")
    resumed = generate_responses(_prompt_set(), bundle, ResponseStore(store_file), PARAMETERS)
    written = _lines(store_file)
    ids = [record["prompt_id"] for record in written]
    assert len(ids) == len(set(ids)) == len(PROMPTS), "every prompt answered exactly once across both runs"
    assert written[: len(before_restart)] == before_restart, "nothing finished before the kill was redone"

    fresh = generate_responses(_prompt_set(), bundle, ResponseStore(tmp_path / "fresh.jsonl"), PARAMETERS)
    assert resumed["prompt_id"].tolist() == fresh["prompt_id"].tolist() == _prompt_set()["prompt_id"].tolist()
    assert resumed["response"].tolist() == fresh["response"].tolist()

    moved = ModelBundle(bundle.model, bundle.tokenizer, "tiny", str(tmp_path / "saved-again"))
    generate_responses(_prompt_set(), moved, ResponseStore(store_file), PARAMETERS)
    assert _lines(store_file) == written, "the same weights in another folder resume"
    with torch.no_grad():
        next(bundle.model.parameters()).add_(0.5)
    generate_responses(_prompt_set(), bundle, ResponseStore(store_file), PARAMETERS)
    assert len(_lines(store_file)) == 2 * len(PROMPTS), "changed weights under the same name answer again"


def test_torn_lines_and_other_settings_are_not_reused(tmp_path):
    store = ResponseStore(tmp_path / "progress.jsonl")
    store.append([{"prompt_id": "a", "fingerprint": "f1", "response": "x"}])
    with (tmp_path / "progress.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"prompt_id": "b", "fingerpr')  # a write cut short by a kill
    assert set(store.finished("f1")) == {"a"}
    assert store.skipped_lines == 1
    assert store.finished("f2") == {}, "responses from another model or settings are regenerated"
    store.append([{"prompt_id": "b", "fingerprint": "f1", "response": "y"}])
    assert set(store.finished("f1")) == {"a", "b"}


def test_a_key_asked_with_two_inputs_in_turn_keeps_both_records(tmp_path):
    store, computed = ResponseStore(tmp_path / "progress.jsonl"), []

    def compute(keys, text):
        computed.extend(keys)
        return [{"response": f"{text} {key}"} for key in keys]

    def ask(text):
        hashes = {"q": text}
        return store.complete("f", ["q"], lambda keys: compute(keys, text), 4, "test", inputs=hashes)["q"]["response"]

    assert [ask("old"), ask("new"), ask("old"), ask("new")] == ["old q", "new q", "old q", "new q"]
    assert computed == ["q", "q"], "each input computed once, then read back whichever was asked last"


def test_shards_split_the_prompt_set(tmp_path, tiny_llama_dir):
    bundle = ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny")
    small = PARAMETERS.model_copy(update={"max_new_tokens": 2, "num_shards": 3})
    parts = [
        generate_responses(_prompt_set(), bundle, ResponseStore(tmp_path / f"s{i}.jsonl"),
                           small.model_copy(update={"shard_index": i}))
        for i in range(3)
    ]
    ids = [pid for part in parts for pid in part["prompt_id"]]
    assert sorted(ids) == sorted(_prompt_set()["prompt_id"]) and all(len(part) for part in parts)
