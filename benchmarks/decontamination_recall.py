"""Does the ``decontaminate`` node catch the ways a benchmark is copied, and how often does it drop a
clean prompt?

Copies of every FSKU benchmark multiple-choice question (../shared/fsku-benchmark), each put in the
project's multiple-choice answer template as a training prompt: options shuffled (the competition's
test set reuses FSKU stems this way), another question's options, the stem alone, and the last two
with one particle of the stem changed (은/는, 이/가, 을/를, 의/에, 와/과, 로/으로). False drops: prompts made
from the knowledge base that share no evaluation question, namely the FSKU-style multiple-choice
prompts of ``compression/calibration.py`` (closed book and with the chunk as context), the
descriptive questions on its sections that the prompt set takes (``prompt_set.corpus_descriptive``)
and, where the environment has written them, its synthetic items. Every prompt goes through the node itself
with the typed default settings.

    python benchmarks/decontamination_recall.py                       # base environment
    python benchmarks/decontamination_recall.py --env qwen_coder_cpu  # and its teacher's synthetic items

Targets: >= 99 % of every kind of copy caught, <= 1 % of the corpus-derived prompts dropped.
Exit code 1 when a target is missed, 0 with a note when the benchmark data is absent.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from string import Template

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, catalog_with_chunks, print_table, verdict, write_result

FSKU = ROOT.parent / "shared" / "fsku-benchmark"
PARTICLE = re.compile(r"(?<=[가-힣])(으로|은|는|이|가|을|를|의|에|와|과|로)(?=\s)")
SWAP = {"은": "는", "는": "은", "이": "가", "가": "이", "을": "를", "를": "을", "의": "에", "에": "의",
        "와": "과", "과": "와", "로": "으로", "으로": "로"}
CORPUS_PROMPTS = 400
TARGET_CAUGHT, TARGET_FALSE_DROP = 0.99, 0.01


def particle_changed(stem: str, rng: random.Random) -> str | None:
    """``stem`` with one particle (at a word's end) swapped, or None when it has none."""
    places = list(PARTICLE.finditer(stem))
    if not places:
        return None
    place = rng.choice(places)
    return stem[: place.start()] + SWAP[place.group()] + stem[place.end():]


def numbered(stem: str, options: list[str]) -> str:
    return "\n".join([stem] + [f"{number} {text}" for number, text in enumerate(options, start=1)])


def copies(questions: list[str], template: str, seed: int) -> dict[str, list[tuple[tuple[int, ...], str]]]:
    """Each kind of copy as (indices of the copied questions, training prompt)."""
    from fsku_kedro.questions import split_options

    rng = random.Random(seed)
    parsed = [split_options(text) for text in questions]
    kinds: dict[str, list[tuple[tuple[int, ...], str]]] = {name: [] for name in (
        "options shuffled", "another question's options", "stem alone", "particle changed, options shuffled",
        "particle changed, stem alone")}
    for index, (stem, options) in enumerate(parsed):
        values = list((options or {}).values())
        shuffled = values[:]
        while len(values) > 1 and shuffled == values:
            rng.shuffle(shuffled)
        other = rng.choice([i for i in range(len(parsed)) if i != index])
        changed = particle_changed(stem, rng)
        texts = {
            "options shuffled": numbered(stem, shuffled),
            "another question's options": numbered(stem, list((parsed[other][1] or {}).values())),
            "stem alone": stem,
        }
        if changed is not None:
            texts["particle changed, options shuffled"] = numbered(changed, shuffled)
            texts["particle changed, stem alone"] = changed
        for kind, text in texts.items():
            sources = (index, other) if kind == "another question's options" else (index,)
            kinds[kind].append((sources, Template(template).substitute(question=text)))
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (FSKU / "mc_kor.csv").exists():
        print(f"no FSKU benchmark at {FSKU}: nothing to measure")
        return 0


    from fsku_kedro.compression.calibration import multiple_choice_prompts
    from fsku_kedro.evaluation.fsku_benchmark import mc_id
    from fsku_kedro.generation.decontamination import normalised
    from fsku_kedro.parameters.response_generation import DecontaminationSettings, PromptSetSettings
    from fsku_kedro.pipelines.response_generation.nodes import build_prompt_set, decontaminate, prompt_id
    from fsku_kedro.prompt_templates import read_templates
    from fsku_kedro.questions import split_options

    catalog = catalog_with_chunks(None if args.env == "base" else args.env)
    mc, descriptive = catalog.load("fsku_benchmark_mc"), catalog.load("fsku_benchmark_descriptive")
    templates = read_templates(catalog.load("prompt_templates"))
    questions = mc["Question"].astype(str).tolist()
    kinds = copies(questions, templates["answer_multiple_choice"], args.seed)

    clean: dict[str, list[str]] = {"knowledge-base MC prompts": multiple_choice_prompts(
        catalog.load("chunks"), CORPUS_PROMPTS, args.seed, templates)}
    synthetic_qa = catalog.load("synthetic_qa") if catalog.exists("synthetic_qa") else pd.DataFrame(columns=["qa_id"])
    candidates, _ = build_prompt_set(synthetic_qa, catalog.load("chunks"), catalog.load("sample_questions"),
                                     catalog.load("user_instructions").iloc[0:0], catalog.load("prompt_templates"),
                                     PromptSetSettings(corpus_descriptive=CORPUS_PROMPTS))
    for source, kind in (("corpus", "knowledge-base descriptive prompts"), ("synthetic", "synthetic items")):
        prompts = candidates.loc[candidates["source"] == source, "prompt"].tolist()
        if prompts:
            clean[kind] = prompts

    def stem(text: str) -> str:
        return normalised(split_options(text)[0])

    # A copy is named right when the matched item has the stem of a copied question (the benchmark
    # repeats some stems across questions).
    rows: list[tuple[str, str, set[str]]] = [(kind, prompt, {stem(questions[i]) for i in sources})
                                             for kind, pairs in kinds.items() for sources, prompt in pairs]
    rows += [(kind, prompt, set()) for kind, prompts in clean.items() for prompt in prompts]
    prompt_set = pd.DataFrame({"source": [kind for kind, _, _ in rows], "prompt": [p for _, p, _ in rows],
                               "prompt_id": [f"{n}-{prompt_id(p)}" for n, (_, p, _) in enumerate(rows)]})
    split = pd.DataFrame({"ID": pd.Series(dtype=str), "split": pd.Series(dtype=str)})
    settings = DecontaminationSettings()
    started = time.perf_counter()
    _, report, _ = decontaminate(prompt_set, [], split, [], mc, descriptive, settings)
    seconds = time.perf_counter() - started
    # The whole-item n-gram rule alone (no stem is long enough to match), for comparison.
    _, item_only, _ = decontaminate(prompt_set, [], split, [], mc, descriptive,
                                    settings.model_copy(update={"stem_min_chars": 10**6}))
    item_only_dropped = set(item_only["prompt_id"])

    full_text = {mc_id(i): text for i, text in enumerate(questions)}
    dropped = {pid: (stem(full_text.get(eid, "")), rule) for pid, eid, rule in
               zip(report["prompt_id"], report["evaluation_id"], report["rule"])}
    figures: dict[str, dict] = {}
    table = []
    for kind in [*kinds, *clean]:
        ids = prompt_set.loc[prompt_set["source"] == kind, "prompt_id"]
        expected = [copied for source, _, copied in rows if source == kind]
        hits = [dropped.get(pid) for pid in ids]
        if kind in kinds:
            caught = sum(hit is not None for hit in hits)
            before = sum(pid in item_only_dropped for pid in ids)
            named = sum(hit is not None and hit[0] in want for hit, want in zip(hits, expected))
            by_stem = sum(hit is not None and hit[1] == "stem" for hit in hits)
            figures[kind] = {"prompts": len(ids), "caught": caught, "share": caught / len(ids),
                             "named_the_copied_question": named, "by_stem_rule": by_stem,
                             "caught_by_the_item_rule_alone": before}
            table.append((kind, "copy", len(ids), caught, f"{caught / len(ids):.1%}", named, by_stem,
                          f"{before / len(ids):.1%}"))
        else:
            drops = sum(hit is not None for hit in hits)
            before = sum(pid in item_only_dropped for pid in ids)
            figures[kind] = {"prompts": len(ids), "dropped": drops, "share": drops / len(ids),
                             "dropped_by_the_item_rule_alone": before,
                             "examples": report.loc[report["source"] == kind, ["prompt", "evaluation_text"]]
                             .head(5).to_dict("records")}
            table.append((kind, "clean", len(ids), drops, f"{drops / len(ids):.1%}", "-", "-",
                          f"{before / len(ids):.1%}"))
    print(f"{len(prompt_set)} prompts against {len(mc)} MC and {len(descriptive)} descriptive FSKU questions "
          f"in {seconds:.1f} s ({args.env} environment)")
    print_table(("prompts", "kind", "count", "caught / dropped", "share", "named the copied question",
                 "by the stem rule", "n-gram rule alone"), table)
    write_result(f"decontamination_{args.env}", figures, seconds=round(seconds, 1), settings=settings.model_dump(),
                 copies_of=f"{len(questions)} FSKU MC questions in the answer_multiple_choice template",
                 models="none (text only)")
    missed = [k for k in kinds if figures[k]["share"] < TARGET_CAUGHT]
    noisy = [k for k in clean if figures[k]["share"] > TARGET_FALSE_DROP]
    return verdict(not missed and not noisy,
                   f">= {TARGET_CAUGHT:.0%} of each kind of copy caught (missed: {missed or 'none'}), "
                   f"<= {TARGET_FALSE_DROP:.0%} of corpus-derived prompts dropped (over: {noisy or 'none'})")


if __name__ == "__main__":
    sys.exit(main())
