"""The teacher-signal cache: the same loss as running the teacher, no teacher pass once cached, shards on disk."""

import copy

import torch
from datasets import Dataset, DatasetDict

from fsku_kedro.distillation.teacher_signal import TeacherSignalStore, row_key
from fsku_kedro.distillation.training import build_trainer, train_round
from fsku_kedro.models.bundle import ModelBundle, weights_key
from tests.distillation.conftest import pair_rows, training_parameters


def _batch(trainer):
    return {k: v for k, v in next(iter(trainer.get_train_dataloader())).items() if torch.is_tensor(v)}


def _count_teacher_passes(teacher):
    """Rows per teacher forward pass, as they happen."""
    calls = []
    handle = teacher.model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    return calls, handle


def test_the_cached_signal_gives_the_loss_of_a_live_teacher_and_skips_its_pass(teacher, student, fixed_pairs,
                                                                                tmp_path):
    cached = training_parameters().model_copy(update={"teacher_signal_dir": str(tmp_path / "signal")})
    for method in ("kd", "distillm_v2"):
        live = build_trainer(method, student, teacher, fixed_pairs, training_parameters(), tmp_path / f"{method}-a")
        batch = _batch(live)
        with torch.no_grad():
            expected = live.compute_loss(live.model, batch)
        filling = build_trainer(method, student, teacher, fixed_pairs, cached, tmp_path / f"{method}-b")
        with torch.no_grad():
            first = filling.compute_loss(filling.model, batch)
        filling.teacher_signal.flush()
        reading = build_trainer(method, student, teacher, fixed_pairs, cached, tmp_path / f"{method}-c")
        assert len(reading.teacher_signal) == 4, "both pairs' chosen and rejected rows were written to disk"
        calls, handle = _count_teacher_passes(teacher)
        with torch.no_grad():
            second = reading.compute_loss(reading.model, batch)
        handle.remove()
        assert calls == [], f"{method}: every row came from the cache"
        torch.testing.assert_close(first, expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(second, expected, atol=1e-6, rtol=1e-6)


def test_only_rows_missing_from_the_cache_run_through_the_teacher(teacher, student, tmp_path):
    settings = training_parameters(max_steps=1).model_copy(update={"teacher_signal_dir": str(tmp_path / "signal")})
    two = DatasetDict({"train": Dataset.from_list(pair_rows(2))})
    train_round("kd", ModelBundle(copy.deepcopy(student.model), student.tokenizer, "s"), teacher, two, settings,
                tmp_path / "first")
    # Another round's pairs: the same two pairs (now cached) and two new ones, in one batch of four.
    four = DatasetDict({"train": Dataset.from_list(pair_rows(4))})
    trainer = build_trainer("kd", ModelBundle(copy.deepcopy(student.model), student.tokenizer, "s"), teacher, four,
                            settings.model_copy(update={"training": settings.training.model_copy(
                                update={"per_device_train_batch_size": 4})}), tmp_path / "second")
    batch = _batch(trainer)
    calls, handle = _count_teacher_passes(teacher)
    with torch.no_grad():
        trainer.compute_loss(trainer.model, batch)
    handle.remove()
    assert calls == [4], "the four rows of the two new pairs, in one teacher pass"
    assert (trainer.teacher_signal.hits, trainer.teacher_signal.misses) == (4, 4)


def test_rows_are_keyed_by_their_tokens_and_response_and_shards_are_whole(teacher, tmp_path):
    ids = torch.tensor([5, 6, 7, 8, 0, 0])
    attention = torch.tensor([1, 1, 1, 1, 0, 0])
    response = torch.tensor([0, 0, 1, 1, 0, 0])
    assert row_key(ids, attention, response) == row_key(torch.tensor([5, 6, 7, 8, 3, 3]), attention, response), (
        "padding does not count")
    assert row_key(ids, attention, response) != row_key(ids, attention, torch.tensor([0, 1, 1, 1, 0, 0]))
    key = weights_key("tiny-teacher", teacher.model)
    store = TeacherSignalStore(tmp_path, key, flush_every=2)
    store.put("a", torch.ones(2, 4))
    assert not list((tmp_path / key).glob("*.safetensors")), "below flush_every, nothing is written yet"
    store.put("b", torch.zeros(1, 4))
    (tmp_path / key / "shard-torn.partial").write_bytes(b"half a shard")
    reread = TeacherSignalStore(tmp_path, key)
    assert len(reread) == 2 and torch.equal(reread.get("a"), torch.ones(2, 4)), "a .partial file is never read"
    assert weights_key("other-teacher", teacher.model) != key
    with torch.no_grad():
        teacher.model.get_input_embeddings().weight.add_(0.01)
    assert weights_key("tiny-teacher", teacher.model) != key, "changed weights, another folder"
