"""Response generation at several batch sizes, on an environment's own prompt set and models:
seconds per prompt and tokens/s with the role's generation settings, and how many greedy answers
differ from the first batch size's (padding changes the arithmetic a little).

    python benchmarks/generation_batch_size.py --env qwen_coder_cpu --prompts 16 --batch-sizes 4 8 16

The prompts are spread over the prompt set's length order (every k-th of the longest first), so
each batch size sees the same mix of long and short prompts. Decoding on a CPU reads every weight
once per step for the whole batch, so a larger batch shares that cost until arithmetic dominates.
Target: the role's configured batch size within 10 % of the fastest measured (seconds per prompt).
Records ``benchmarks/results/generation_batch_size_<env>_<role>.<CPU kind>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time

from report import catalog_with_chunks, print_table, verdict, write_result

from fsku_kedro.generation.backends import make_backend
from fsku_kedro.parameters.generation import GeneratorSettings

SLACK = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="Kedro environment (default: base)")
    parser.add_argument("--role", choices=["student", "teacher"], default="student")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    catalog = catalog_with_chunks(args.env)
    if not catalog.exists("prompt_set"):
        print(f"no prompt set in {args.env or 'base'}: run the response_generation pipeline's build_prompt_set first")
        return 2
    prompt_set = catalog.load("prompt_set")
    settings = GeneratorSettings.model_validate(catalog.load(f"params:{args.role}")).generation
    model = catalog.load(f"{args.role}_model")
    ordered = prompt_set.iloc[(-prompt_set["prompt"].str.len()).argsort(kind="stable")]
    step = max(len(ordered) // args.prompts, 1)
    prompts = ordered["prompt"].tolist()[::step][: args.prompts]
    chats = [[{"role": "user", "content": p}] for p in prompts]
    sampling = settings.sampling()
    rows, texts = [], {}
    for batch_size in args.batch_sizes:
        backend = make_backend(model, settings.model_copy(update={"batch_size": batch_size}))
        start = time.perf_counter()
        completions = backend.generate(chats, sampling)
        seconds = time.perf_counter() - start
        tokens = sum(c.completion_tokens for c in completions)
        texts[batch_size] = [c.text for c in completions]
        rows.append({"batch_size": batch_size, "seconds": seconds, "seconds_per_prompt": seconds / len(chats),
                     "tokens": tokens, "tokens_per_s": tokens / seconds,
                     "answers_differing_from_first": sum(a != b for a, b in zip(texts[batch_size],
                                                                                texts[args.batch_sizes[0]]))})
    fastest = min(rows, key=lambda row: row["seconds_per_prompt"])
    configured = next((row for row in rows if row["batch_size"] == settings.batch_size), None)
    print(f"{model.name} ({args.role} of {args.env or 'base'}), {len(chats)} prompts of the prompt set, "
          f"max_new_tokens {sampling.max_new_tokens}, greedy={not sampling.do_sample}; real models")
    print_table(["batch size", "seconds", "s / prompt", "tokens", "tokens/s", "answers differing from the first"],
                [[r["batch_size"], f"{r['seconds']:.1f}", f"{r['seconds_per_prompt']:.2f}", r["tokens"],
                  f"{r['tokens_per_s']:.2f}", r["answers_differing_from_first"]] for r in rows])
    met = configured is not None and configured["seconds_per_prompt"] <= SLACK * fastest["seconds_per_prompt"]
    name = f"generation_batch_size_{args.env or 'base'}_{args.role}"
    write_result(name, {"rows": rows, "configured_batch_size": settings.batch_size, "target_met": met},
                 by_cpu_kind=True, model=model.name, prompts=len(chats), max_new_tokens=sampling.max_new_tokens,
                 cache_implementation=settings.cache_implementation)
    return verdict(met, f"the configured batch size ({settings.batch_size}) within {SLACK - 1:.0%} of the fastest "
                   f"measured ({fastest['batch_size']}: {fastest['seconds_per_prompt']:.2f} s a prompt)")


if __name__ == "__main__":
    sys.exit(main())
