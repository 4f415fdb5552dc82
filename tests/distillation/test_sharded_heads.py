"""The chunked loss's reads (final hidden states, LM heads) under FSDP2, on CPU with two gloo ranks.

Both ranks see the same batch, so the loss and the averaged LoRA gradients of the sharded run
must equal those of one unwrapped process. DeepSpeed ZeRO-3 is not installed here; its branch of
``head_weight`` is covered only by the refusal test below.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

WORLD = 2


def _models():
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    # Like Qwen2.5: the student's head is tied to its embeddings, the teacher's has more rows.
    student = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=32, tie_word_embeddings=True, **common))
    teacher = Qwen2ForCausalLM(Qwen2Config(vocab_size=320, hidden_size=48, tie_word_embeddings=False, **common))
    student = get_peft_model(student, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in student.named_parameters():  # LoRA B starts at zero: give the loss a gradient path
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    teacher.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 290, (4, 12), generator=g)
    attention = torch.ones_like(ids)
    attention[1, :3] = 0  # left padding on one row
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 6:] = True
    return student, teacher, ids, attention, mask


def _loss(student, teacher, ids, attention, mask):
    from fsku_kedro.distillation.heads import final_hidden_states, head_weight
    from fsku_kedro.distillation.losses import distillation_loss

    student_hidden = final_hidden_states(student, ids, attention)[:, :-1]
    with torch.no_grad():
        teacher_hidden = final_hidden_states(teacher, ids, attention)[:, :-1]
    with head_weight(student) as student_head, head_weight(teacher) as teacher_head:
        loss = distillation_loss(
            student_hidden, student_head, teacher_hidden, teacher_head, ids[:, 1:], mask[:, 1:],
            loss_type="distillm_v2", alpha_teacher=0.1, alpha_student=0.1, beta=1.0, jsd_lambda=0.5,
            vocab_size=300, chunk_size=8,
        ).loss
    loss.backward()
    return loss.detach()


def _lora_grads(model):
    return {name: param.grad for name, param in model.named_parameters() if "lora_" in name}


def _sharded_worker(rank: int, port: int, result_file: str):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        student, teacher, ids, attention, mask = _models()
        mesh = init_device_mesh("cpu", (WORLD,))
        for model in (student.get_base_model(), teacher):
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
        fully_shard(student, mesh=mesh)
        fully_shard(teacher, mesh=mesh)
        assert type(student.get_base_model().lm_head.weight).__name__ == "DTensor"
        loss = _loss(student, teacher, ids, attention, mask)
        grads = {name: grad.full_tensor() for name, grad in _lora_grads(student).items()}
        if rank == 0:
            torch.save({"loss": loss, "grads": grads}, result_file)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_fsdp2_sharded_models_give_the_unwrapped_loss_and_lora_gradients(tmp_path):
    import torch.multiprocessing as mp

    student, teacher, ids, attention, mask = _models()
    expected_loss = _loss(student, teacher, ids, attention, mask)
    expected = _lora_grads(student)
    assert all(grad is not None and grad.abs().sum() > 0 for grad in expected.values())

    result_file = tmp_path / "sharded.pt"
    mp.spawn(_sharded_worker, args=(_free_port(), str(result_file)), nprocs=WORLD, join=True)
    sharded = torch.load(result_file)
    torch.testing.assert_close(sharded["loss"], expected_loss, rtol=1e-5, atol=1e-6)
    assert sharded["grads"].keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(sharded["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_trainable_partitioned_head_is_refused():
    from fsku_kedro.distillation.heads import head_weight

    model, *_ = _models()
    head = model.get_base_model().lm_head.weight
    head.ds_id = 0  # what DeepSpeed ZeRO-3 marks its partitioned parameters with
    head.requires_grad_(True)
    with pytest.raises(RuntimeError, match="ZeRO-3"), head_weight(model):
        pass
