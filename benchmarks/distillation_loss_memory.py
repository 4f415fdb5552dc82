"""Peak memory of one DistiLLM-2 loss forward + backward: chunked vs full-vocabulary logits.

    python benchmarks/distillation_loss_memory.py [--vocab 151936] [--tokens 1024] [--hidden 896]

One pair (a chosen and a rejected row) of ``--tokens`` response tokens, hidden size ``--hidden``
for student and teacher, Qwen2.5's vocabulary by default, float32 on CPU. Each variant runs in
its own process; its peak is the growth of the process's maximum resident set during the loss
(inputs, heads and their gradient buffers are allocated before the baseline is read).

Targets: the chunked loss peaks at least 8x lower, and its loss and gradients equal the
full-vocabulary loss's to 1e-5 (relative for the gradients).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import print_table, verdict


def _inputs(vocab: int, tokens: int, hidden: int):
    g = torch.Generator().manual_seed(0)
    student_hidden = torch.randn(2, tokens, hidden, generator=g).requires_grad_()
    student_head = (0.02 * torch.randn(vocab, hidden, generator=g)).requires_grad_()
    teacher_hidden = torch.randn(2, tokens, hidden, generator=g)
    teacher_head = 0.02 * torch.randn(vocab, hidden, generator=g)
    labels = torch.randint(0, vocab, (2, tokens), generator=g)
    mask = torch.ones(2, tokens, dtype=torch.bool)
    return student_hidden, student_head, teacher_hidden, teacher_head, labels, mask


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, vocab: int, tokens: int, hidden: int, chunk: int, out: Path) -> None:
    from fsku_kedro.distillation.losses import distillation_loss, reference_distillation_loss
    from fsku_kedro.parameters.distillation import DistillMSettings

    defaults = DistillMSettings()  # DistiLLM-2's released settings
    settings = {"loss_type": "distillm_v2", "alpha_teacher": defaults.alpha_teacher,
                "alpha_student": defaults.alpha_student, "beta": defaults.beta, "jsd_lambda": defaults.jsd_lambda}
    torch.set_num_threads(torch.get_num_threads())
    hs, ws, ht, wt, labels, mask = _inputs(vocab, tokens, hidden)
    hs.grad = torch.zeros_like(hs)
    ws.grad = torch.zeros_like(ws)
    baseline = _peak_mib()
    start = time.perf_counter()
    if variant == "chunked":
        loss = distillation_loss(hs, ws, ht, wt, labels, mask, chunk_size=chunk, **settings).loss
    else:
        with torch.no_grad():
            teacher_logits = ht @ wt.T
        loss = reference_distillation_loss(hs @ ws.T, teacher_logits, labels, mask, **settings)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = _peak_mib() - baseline
    torch.save({"loss": loss.detach(), "grad_hidden": hs.grad, "grad_head": ws.grad}, out / f"{variant}.pt")
    (out / f"{variant}.json").write_text(json.dumps({"peak_mib": peak, "seconds": seconds}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--variant", choices=["chunked", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.vocab, args.tokens, args.hidden, args.chunk, Path(args.out))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for variant in ("chunked", "naive"):
            command = [sys.executable, __file__, "--variant", variant, "--out", tmp, "--vocab", str(args.vocab),
                       "--tokens", str(args.tokens), "--hidden", str(args.hidden), "--chunk", str(args.chunk)]
            subprocess.run(command, check=True)
        stats = {v: json.loads((out / f"{v}.json").read_text()) for v in ("chunked", "naive")}
        chunked, naive = torch.load(out / "chunked.pt"), torch.load(out / "naive.pt")
    loss_diff = abs(float(chunked["loss"]) - float(naive["loss"]))
    grad_diffs = {}
    for name in ("grad_hidden", "grad_head"):
        scale = naive[name].abs().max().clamp(min=1e-30)
        grad_diffs[name] = float((chunked[name] - naive[name]).abs().max() / scale)
    ratio = stats["naive"]["peak_mib"] / max(stats["chunked"]["peak_mib"], 1.0)

    print(f"V={args.vocab}, T={args.tokens}, one pair, hidden {args.hidden}, chunk {args.chunk}, float32, CPU\n")
    print_table(
        ["variant", "peak MiB above inputs", "seconds", "loss"],
        [[v, f"{stats[v]['peak_mib']:.0f}", f"{stats[v]['seconds']:.1f}", f"{float(r['loss']):.6f}"]
         for v, r in (("chunked", chunked), ("naive", naive))],
    )
    print()
    print_table(
        ["check", "value"],
        [["peak ratio naive / chunked", f"{ratio:.1f}x"], ["|loss difference|", f"{loss_diff:.2e}"],
         ["max relative gradient difference (hidden)", f"{grad_diffs['grad_hidden']:.2e}"],
         ["max relative gradient difference (head)", f"{grad_diffs['grad_head']:.2e}"]],
    )
    met = ratio >= 8 and loss_diff <= 1e-5 and max(grad_diffs.values()) <= 1e-5
    return verdict(met, "chunked peak >= 8x lower, loss and gradients equal to 1e-5")


if __name__ == "__main__":
    sys.exit(main())
