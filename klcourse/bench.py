"""Benchmarks that print figures: ``python -m klcourse.bench kl-cost``.

``kl-cost`` measures what the seed post's cost table is about. Given the logits of both models
for a batch of sampled tokens (the forward passes must produce them either way), it times

* **full-vocabulary KL** per position, ``Σ_v π(v) (log π(v) − log π_ref(v))``
  (:func:`klcourse.logprobs.exact_per_token_kl`), and
* **sampled-token KL** per position, ``log π(y_t) − log π_ref(y_t)`` (k1, via
  :func:`klcourse.logprobs.gather_logprobs`), which still needs a log-sum-exp over the vocabulary,

and the one step both must pay first, the LM head that turns hidden states into logits. It also
counts the bytes each must keep per rollout for the PPO update: the reference's log-probabilities
over the vocabulary (full) or of the sampled token only (sampled).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from klcourse.logprobs import exact_per_token_kl, gather_logprobs

GPT2_VOCAB = 50_257
GPT2_WIDTH = 768


@dataclass(frozen=True)
class KLCost:
    """Median seconds of each step and the bytes each approach keeps per rollout batch."""

    vocab: int
    positions: int
    lm_head_s: float
    full_kl_s: float
    sampled_kl_s: float
    full_bytes: int
    sampled_bytes: int

    @property
    def time_ratio(self) -> float:
        """Full-vocabulary KL time over sampled-token KL time (same logits)."""
        return self.full_kl_s / self.sampled_kl_s

    @property
    def memory_ratio(self) -> float:
        """Bytes kept for the full KL over bytes kept for the sampled KL: exactly the vocabulary size."""
        return self.full_bytes / self.sampled_bytes

    def report(self) -> str:
        """A few lines for a terminal or a notebook."""
        mib = 2**20
        return "\n".join(
            [
                f"vocab {self.vocab:,}, {self.positions:,} token positions, float32",
                f"  LM head (hidden → logits), needed by both: {self.lm_head_s * 1e3:8.1f} ms",
                f"  full-vocabulary KL from the logits:        {self.full_kl_s * 1e3:8.1f} ms",
                f"  sampled-token KL (k1) from the logits:     {self.sampled_kl_s * 1e3:8.1f} ms",
                f"  time ratio full / sampled:                 {self.time_ratio:8.2f}×",
                f"  kept per batch: full {self.full_bytes / mib:,.1f} MiB vs sampled "
                f"{self.sampled_bytes / 1024:,.1f} KiB (ratio {self.memory_ratio:,.0f}×)",
            ]
        )


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms up and is not counted
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


@torch.no_grad()
def kl_cost(
    vocab: int = GPT2_VOCAB,
    batch: int = 8,
    seq_len: int = 64,
    width: int = GPT2_WIDTH,
    repeats: int = 5,
    device: torch.device | None = None,
    seed: int = 0,
) -> KLCost:
    """Time full vs sampled per-token KL on random logits of GPT-2's shape (see module doc)."""
    device = device or torch.device("cpu")
    g = torch.Generator(device="cpu").manual_seed(seed)
    hidden = torch.randn(batch, seq_len, width, generator=g).to(device)
    head = (torch.randn(width, vocab, generator=g) / width**0.5).to(device)
    logits_p = hidden @ head
    logits_q = logits_p + 0.1 * torch.randn(batch, seq_len, vocab, generator=g).to(device)
    tokens = torch.distributions.Categorical(logits=logits_p).sample()
    mask = torch.ones(batch, seq_len, device=device)

    lm_head = _median_seconds(lambda: hidden @ head, repeats, device)
    full = _median_seconds(lambda: exact_per_token_kl(logits_p, logits_q, mask), repeats, device)
    sampled = _median_seconds(
        lambda: gather_logprobs(logits_p, tokens) - gather_logprobs(logits_q, tokens),
        repeats,
        device,
    )
    positions = batch * seq_len
    return KLCost(vocab, positions, lm_head, full, sampled, positions * vocab * 4, positions * 4)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m klcourse.bench")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    k = sub.add_parser("kl-cost", help="full-vocabulary vs sampled-token KL: time and memory")
    k.add_argument("--vocab", type=int, default=GPT2_VOCAB)
    k.add_argument("--batch", type=int, default=8)
    k.add_argument("--seq-len", type=int, default=64)
    k.add_argument("--repeats", type=int, default=5)
    k.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"device: {device}")
    cost = kl_cost(args.vocab, args.batch, args.seq_len, repeats=args.repeats, device=device)
    print(cost.report())


if __name__ == "__main__":
    main()
