"""Text generation behind one interface: transformers (default, CPU or GPU) and vLLM (GPU extra).

A request is a chat (a list of ``{"role", "content"}`` messages); each backend applies the
model's own chat template and returns the completion with its finish reason and token counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tqdm.auto import tqdm

from fsku_kedro.models.bundle import ModelBundle

if TYPE_CHECKING:  # settings types only: the backends themselves need no pydantic
    from fsku_kedro.parameters.generation import BackendSettings, SamplingSettings

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (end of sequence) or "length" (max_new_tokens reached)
    prompt_tokens: int
    completion_tokens: int
    mean_logprob: float | None = None  # mean log-probability of the generated tokens, when known


class GenerationBackend(Protocol):
    model_name: str

    def generate(
        self, chats: list[list[dict[str, str]]], params: SamplingSettings, max_time: float | None = None
    ) -> list[Completion]: ...


class TransformersBackend:
    """Batched ``generate`` with left padding; prompts are sorted by length so batches waste
    little padding, and results come back in input order."""

    def __init__(
        self,
        bundle: ModelBundle,
        batch_size: int = 8,
        show_progress: bool = True,
        cache_implementation: str | None = "static",
    ):
        self.bundle = bundle
        self.model_name = bundle.name
        self.batch_size = batch_size
        self.show_progress = show_progress
        # A pre-allocated KV cache avoids re-copying the growing cache at every decoding step
        # (measured 153 -> 126 ms per step at batch 16 on a 2-core CPU).
        self.cache_implementation = cache_implementation

    def render(self, chat: list[dict[str, str]]) -> str:
        return self.bundle.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def generate(
        self, chats: list[list[dict[str, str]]], params: SamplingSettings, max_time: float | None = None
    ) -> list[Completion]:
        """Completions in input order; ``max_time`` stops each batch's decoding after that many seconds."""
        import torch

        tokenizer, model = self.bundle.tokenizer, self.bundle.model
        tokenizer.padding_side = "left"
        encoded = [tokenizer(self.render(chat), add_special_tokens=False)["input_ids"] for chat in chats]
        order = sorted(range(len(chats)), key=lambda i: -len(encoded[i]))
        configured = model.generation_config.eos_token_id
        configured = [configured] if isinstance(configured, int) else list(configured or [])
        eos_ids = {tokenizer.eos_token_id, *configured} - {None}
        device = next(model.parameters()).device  # the prompts go where the weights are
        results: dict[int, Completion] = {}
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=f"generate ({self.model_name})", disable=not self.show_progress):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
            if params.do_sample:
                torch.manual_seed(params.seed)
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=params.max_new_tokens,
                    do_sample=params.do_sample,
                    temperature=params.temperature if params.do_sample else None,
                    top_p=params.top_p if params.do_sample else None,
                    top_k=None,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=sorted(eos_ids),
                    cache_implementation=self.cache_implementation,
                    max_time=max_time,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
            # Log-probabilities of the chosen tokens under the distribution that was sampled from.
            chosen = model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
            for row, index in enumerate(batch):
                tokens = new_tokens[row].tolist()
                stop = next((pos for pos, token in enumerate(tokens) if token in eos_ids), None)
                kept = tokens if stop is None else tokens[:stop]
                counted = len(kept) + (0 if stop is None else 1)
                logprobs = chosen[row, :counted].float()
                finite = logprobs[torch.isfinite(logprobs)]
                results[index] = Completion(
                    text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    finish_reason="length" if stop is None else "stop",
                    prompt_tokens=len(encoded[index]),
                    completion_tokens=counted,
                    mean_logprob=float(finite.mean()) if len(finite) else None,
                )
        return [results[i] for i in range(len(chats))]


class VLLMBackend:
    """vLLM ``LLM.chat`` with ``SamplingParams``; a LoRA adapter is served with ``LoRARequest``."""

    def __init__(
        self,
        model_path: str,
        model_name: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        lora_path: str | None = None,
        dtype: str = "auto",
    ):
        try:
            from vllm import LLM
        except ImportError as error:
            raise ImportError(
                "the vllm backend needs the GPU extra: pip install -e '.[gpu]' on a CUDA machine"
            ) from error
        self.model_name = model_name
        self._lora = None
        if lora_path:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("student", 1, lora_path)
        self._llm = LLM(
            model=model_path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_lora=lora_path is not None,
            dtype=dtype,
        )

    def generate(
        self, chats: list[list[dict[str, str]]], params: SamplingSettings, max_time: float | None = None
    ) -> list[Completion]:
        """Completions in input order; vLLM has no per-call time limit, so ``max_time`` is not applied
        here (the circuit breaker still judges the batch by its time)."""
        from vllm import SamplingParams

        sampling = SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature if params.do_sample else 0.0,
            top_p=params.top_p if params.do_sample else 1.0,
            seed=params.seed,
            logprobs=0,  # the sampled token's log-probability only
        )
        outputs = self._llm.chat(chats, sampling, lora_request=self._lora, use_tqdm=True)
        return [
            Completion(
                text=out.outputs[0].text.strip(),
                finish_reason="length" if out.outputs[0].finish_reason == "length" else "stop",
                prompt_tokens=len(out.prompt_token_ids),
                completion_tokens=len(out.outputs[0].token_ids),
                mean_logprob=(out.outputs[0].cumulative_logprob / len(out.outputs[0].token_ids)
                              if out.outputs[0].token_ids and out.outputs[0].cumulative_logprob is not None else None),
            )
            for out in outputs
        ]


def make_backend(bundle: ModelBundle, settings: BackendSettings, show_progress: bool = True) -> GenerationBackend:
    """The backend named by ``settings.backend``; vLLM is imported only when selected."""
    if settings.backend == "transformers":
        return TransformersBackend(bundle, batch_size=settings.batch_size, show_progress=show_progress,
                                   cache_implementation=settings.cache_implementation)
    if not bundle.path:
        raise ValueError(f"the vllm backend needs a model directory; {bundle.name} has none")
    return VLLMBackend(
        model_path=bundle.path,
        model_name=bundle.name,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_model_len=settings.max_model_len,
        lora_path=settings.lora_path,
    )
