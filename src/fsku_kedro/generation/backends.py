"""Text generation behind one interface: transformers (default, CPU or GPU) and vLLM (its GPU or
CPU extra; generation.vllm_engine).

A request is a chat (a list of ``{"role", "content"}`` messages); each backend applies the
model's own chat template and returns the completion with its finish reason and token counts.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tqdm.auto import tqdm

from fsku_kedro.models.bundle import ModelBundle

if TYPE_CHECKING:  # settings types only: the backends themselves need no pydantic
    from fsku_kedro.parameters.generation import BackendSettings, SamplingSettings, VLLMSettings

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
        *,
        batch_size: int,
        cache_implementation: str | None,
        show_progress: bool = True,
    ):
        self.bundle = bundle
        self.model_name = bundle.name
        self.batch_size = batch_size
        self.show_progress = show_progress
        # "static", a pre-allocated KV cache, avoids re-copying the growing cache at every decoding step
        # (measured 153 -> 126 ms per step at batch 16 on a 2-core CPU); None: transformers' dynamic cache.
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
        eos_ids = stop_token_ids(self.bundle)
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
    """vLLM over token ids rendered by the project's own tokenizer and chat template, so both backends
    see the same prompt. It generates (``SamplingParams``; a LoRA adapter through ``LoRARequest``) and
    reads next-token log-probabilities of chosen tokens (``logprob_token_ids``) for choice scoring; with
    prefix caching, rows that begin alike (option rotations, one template) share their computed head."""

    def __init__(self, bundle: ModelBundle, settings: VLLMSettings, show_progress: bool = True):
        from fsku_kedro.generation.vllm_engine import ENGINES, EngineSpec, adapter_id, lora_rank

        if not bundle.path:
            raise ValueError(f"the vllm backend loads a model directory and {bundle.name} has none")
        self.bundle = bundle
        self.model_name = bundle.name
        self.show_progress = show_progress
        self._lora = None
        rank = None
        if settings.lora_path:
            from vllm.lora.request import LoRARequest

            rank = lora_rank(settings.lora_path)
            self._lora = LoRARequest(settings.lora_path, adapter_id(settings.lora_path), settings.lora_path)
        dtype = str(bundle.model.dtype).removeprefix("torch.")
        self._llm = ENGINES.get(EngineSpec(str(bundle.path), dtype, settings, rank))

    def render(self, chat: list[dict[str, str]]) -> str:
        return self.bundle.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def _prompts(self, token_rows: list[list[int]]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=list(row)) for row in token_rows]

    def generate(
        self, chats: list[list[dict[str, str]]], params: SamplingSettings, max_time: float | None = None
    ) -> list[Completion]:
        """Completions in input order; vLLM has no per-call time limit, so ``max_time`` is not applied
        here (the circuit breaker still judges the batch by its time)."""
        from vllm import SamplingParams

        tokenizer = self.bundle.tokenizer
        encoded = [tokenizer(self.render(chat), add_special_tokens=False)["input_ids"] for chat in chats]
        eos_ids = stop_token_ids(self.bundle)
        sampling = SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature if params.do_sample else 0.0,
            top_p=params.top_p if params.do_sample else 1.0,
            seed=params.seed,
            stop_token_ids=sorted(eos_ids),
            logprobs=0,  # the sampled token's log-probability only
            detokenize=False,  # decoded below exactly as the transformers backend decodes
        )
        outputs = self._llm.generate(self._prompts(encoded), sampling, lora_request=self._lora,
                                     use_tqdm=self.show_progress)
        completions = []
        for ids, out in zip(encoded, outputs):
            tokens = list(out.outputs[0].token_ids)
            kept = [t for t in tokens if t not in eos_ids]
            finish = "length" if out.outputs[0].finish_reason == "length" else "stop"
            logprob = out.outputs[0].cumulative_logprob
            completions.append(Completion(
                text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                finish_reason=finish,
                prompt_tokens=len(ids),
                completion_tokens=len(tokens),
                mean_logprob=logprob / len(tokens) if tokens and logprob is not None else None,
            ))
        return completions

    def next_token_log_probs(self, token_rows: list[list[int]], wanted: list[list[int]],
                             show_progress: bool = False) -> list[list[float]]:
        """For each row of token ids, the log-probabilities of the ``wanted`` next tokens (full softmax).

        Rows that begin with at least one cache block of another row's tokens wait for a second wave:
        requests scheduled together compute their common head each, while a later request finds the
        head in the prefix cache."""
        from vllm import SamplingParams

        block = self._llm.llm_engine.vllm_config.cache_config.block_size
        values: list[list[float]] = [[] for _ in token_rows]
        for wave in sharing_waves(token_rows, block):
            if not wave:
                continue
            params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(wanted[r]),
                                     detokenize=False) for r in wave]
            outputs = self._llm.generate(self._prompts([token_rows[r] for r in wave]), params,
                                         lora_request=self._lora, use_tqdm=show_progress)
            for r, out in zip(wave, outputs):
                read = out.outputs[0].logprobs[0]
                values[r] = [read[token].logprob for token in wanted[r]]
        return values


def sharing_waves(token_rows: list[list[int]], block: int) -> tuple[list[int], list[int]]:
    """Row indices in two waves: the second holds every row whose first ``block`` tokens or more are the
    beginning of a row in the first (rows in token order, each compared with the one before it)."""
    first: list[int] = []
    second: list[int] = []
    previous: list[int] | None = None
    for r in sorted(range(len(token_rows)), key=lambda r: token_rows[r]):
        shared = len(os.path.commonprefix([previous, token_rows[r]])) if previous is not None else 0
        (second if shared >= block else first).append(r)
        previous = token_rows[r]
    return first, second


def stop_token_ids(bundle: ModelBundle) -> set[int]:
    """The tokens that end a completion: the tokenizer's end of sequence and the generation config's."""
    configured = bundle.model.generation_config.eos_token_id
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    return {bundle.tokenizer.eos_token_id, *configured} - {None}


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning(message)


def vllm_backend(bundle: ModelBundle, settings: BackendSettings, show_progress: bool = True) -> VLLMBackend | None:
    """A vLLM backend for ``bundle`` when ``settings`` ask for one and it can run here; otherwise None,
    after one log line saying why the transformers backend serves instead."""
    if settings.backend != "vllm":
        return None
    from fsku_kedro.generation.vllm_engine import unavailable_reason

    reason = unavailable_reason()
    if reason is None and not bundle.path:
        reason = f"{bundle.name} is held in memory only and vLLM loads a model directory"
    if reason is None:
        try:
            return VLLMBackend(bundle, settings.vllm, show_progress=show_progress)
        except Exception as error:  # noqa: BLE001 - an engine that does not start must not stop the run
            reason = f"its engine did not start for {bundle.name} ({type(error).__name__}: {error})"
    _warn_once(f"generation.backend is vllm, but {reason}; the transformers backend serves instead")
    return None


def make_backend(bundle: ModelBundle, settings: BackendSettings, show_progress: bool = True) -> GenerationBackend:
    """The backend named by ``settings.backend``; vLLM is imported only when selected, and where it
    cannot run the transformers backend serves (logged once per reason)."""
    engine = vllm_backend(bundle, settings, show_progress)
    if engine is not None:
        return engine
    return TransformersBackend(bundle, batch_size=settings.batch_size, show_progress=show_progress,
                               cache_implementation=settings.cache_implementation)
