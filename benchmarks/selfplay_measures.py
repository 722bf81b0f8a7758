"""What ``benchmarks.selfplay`` measures on a trained model, and how its tables and decision are made.

Held-out prompts are the first quarter of validation windows; the real continuation is the window's next tokens.
Measured per arm: validation loss (on the protocol's windows), reference-match (chrF++ from sacrebleu, 0 to 1, of
the greedy and of sampled continuations against the real continuation, at the self-play length), greedy seq-rep-4
and distinct-2 (over a longer greedy continuation), and the verifiable reward of the sampled continuations.
"""
from __future__ import annotations

import statistics
from typing import Any

import torch
from sacrebleu.metrics import CHRF

from azr.rl.rewards import build_rewards
from azr.rl.selfplay import PROMPT_FRACTION, generate
from azr.training.losses import validation_loss
from azr.training.quality import distinct, seq_rep

REFERENCE_TOKENS = 24  # the self-play continuation length: reference-match and the sampled continuations
GREEDY_TOKENS = 64  # greedy continuation for seq-rep-4 and distinct-2
METRICS = ("val_loss", "chrf_greedy", "chrf_sampled", "seq_rep_4", "distinct_2", "verifiable")
LOWER_IS_BETTER = {"val_loss", "seq_rep_4"}
CHRF_PP = CHRF(word_order=2)


def chrf(texts: list[str], references: list[str]) -> float:
    """Mean sentence-level chrF++ (0 to 1) of ``texts`` against ``references``."""
    return statistics.mean(CHRF_PP.sentence_score(t, [r]).score / 100 for t, r in zip(texts, references))


def verifiable_rate(verifiable: str, tokenizer, ids: list[list[int]]) -> float:
    """Mean of the verifiable reward over continuations given as token ids."""
    reward = build_rewards(verifiable, tokenizer, torch.zeros(1, dtype=torch.long))
    totals, _ = reward.score([""] * len(ids), tokenizer.batch_decode(ids), completion_ids=ids)
    return float(totals.mean())


@torch.no_grad()
def measure(model, tokenizer, windows: torch.Tensor, verifiable: str, seed: int, samples: int) -> dict[str, float]:
    """Every metric of ``model`` on held-out ``windows`` (prompt: the first quarter; reference: what follows), with
    ``samples`` sampled continuations per prompt."""
    prompt_len = windows.shape[1] // PROMPT_FRACTION
    prompts = windows[:, :prompt_len]
    real = tokenizer.batch_decode(windows[:, prompt_len:prompt_len + REFERENCE_TOKENS].tolist())
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    greedy = generate(model, prompts, GREEDY_TOKENS, 1.0, 1, eos, pad).continuations()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sampled = generate(model, prompts.repeat_interleave(samples, dim=0), REFERENCE_TOKENS, 1.0, 50,
                           eos, pad).continuations()
    return {"val_loss": validation_loss(model, windows),
            "chrf_greedy": chrf(tokenizer.batch_decode([g[:REFERENCE_TOKENS] for g in greedy]), real),
            "chrf_sampled": chrf(tokenizer.batch_decode(sampled), [r for r in real for _ in range(samples)]),
            "seq_rep_4": statistics.mean(seq_rep(g) for g in greedy), "distinct_2": distinct(greedy),
            "verifiable": verifiable_rate(verifiable, tokenizer, sampled)}


def real_rate(tokenizer, windows: torch.Tensor, verifiable: str) -> float:
    """The verifiable reward's rate on the real continuations of the held-out prompts."""
    prompt_len = windows.shape[1] // PROMPT_FRACTION
    return verifiable_rate(verifiable, tokenizer, windows[:, prompt_len:prompt_len + REFERENCE_TOKENS].tolist())


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: dict[str, dict[str, Any]], arms: list[str]) -> dict[str, Any]:
    """Per arm and metric: mean, sd over seeds, and the effect (arm mean minus supervised mean) beside the
    supervised arm's seed-to-seed sd; the compute ratio (arm seconds / supervised seconds) per seed."""
    table: dict[str, Any] = {}
    for arm in ["warmup", *arms]:
        table[arm] = {}
        for metric in METRICS:
            mean, sd = spread([r[arm][metric] for r in runs.values()])
            base_mean, base_sd = spread([r["supervised"][metric] for r in runs.values()])
            table[arm][metric] = {"mean": mean, "sd": sd, "effect": mean - base_mean, "supervised_sd": base_sd}
        if arm != "warmup":
            ratios = [r[arm]["seconds"] / r["supervised"]["seconds"] for r in runs.values()]
            table[arm]["compute_ratio"] = {"mean": statistics.mean(ratios), "min": min(ratios), "max": max(ratios)}
    table["real_verifiable_rate"] = statistics.mean(r["real_verifiable_rate"] for r in runs.values())
    return table


def beats_supervised(table: dict[str, Any], arm: str) -> dict[str, Any]:
    """Issue 26's bar for keeping self-play on: greedy reference-match above supervised-only by more than 2
    supervised seed-sd, validation loss within +1 %, and greedy seq-rep-4 lower."""
    row, base = table[arm], table["supervised"]
    checks = {"chrf_greedy_above_2sd": row["chrf_greedy"]["effect"] > 2 * base["chrf_greedy"]["sd"],
              "val_loss_within_1pct": row["val_loss"]["mean"] <= 1.01 * base["val_loss"]["mean"],
              "seq_rep_4_lower": row["seq_rep_4"]["effect"] < 0}
    return {**checks, "met": all(checks.values())}


def quality_held(table: dict[str, Any], arm: str, tolerance_sd: float = 1.0) -> dict[str, Any]:
    """Whether ``arm`` keeps every text measure no worse than supervised-only by more than ``tolerance_sd``
    supervised seed-sd, its verifiable reward's rise in those sds (the second-round rule, BENCHMARKS.md), and its
    largest text-measure cost in those sds (negative: every measure better; the sixth round's rule)."""
    row, base = table[arm], table["supervised"]
    checks, costs = {}, {}
    for metric in (m for m in METRICS if m != "verifiable"):
        worse = row[metric]["effect"] if metric in LOWER_IS_BETTER else -row[metric]["effect"]
        checks[metric] = worse <= tolerance_sd * base[metric]["sd"]
        costs[metric] = worse / base[metric]["sd"] if base[metric]["sd"] else None
    rise, sd = row["verifiable"]["effect"], base["verifiable"]["sd"]
    largest = max((cost for cost in costs.values() if cost is not None), default=None)
    return {"text_measures_held": checks, "all_held": all(checks.values()), "verifiable_rise": rise,
            "verifiable_rise_in_sd": rise / sd if sd else None, "largest_text_cost_in_sd": largest}


def markdown(table: dict[str, Any], arms: list[str]) -> str:
    """The table as markdown: mean ± sd per metric, then each effect beside the supervised arm's sd."""
    head = "| arm | compute | " + " | ".join(METRICS) + " |\n|---|---|" + "---|" * len(METRICS) + "\n"
    rows = []
    for arm in ["warmup", *arms]:
        row = table[arm]
        ratio = row.get("compute_ratio")
        compute = f"{ratio['mean']:.2f}× ({ratio['min']:.2f}–{ratio['max']:.2f})" if ratio else "–"
        cells = []
        for metric in METRICS:
            cell = row[metric]
            text = f"{cell['mean']:.4f} ± {cell['sd']:.4f}"
            if arm not in ("warmup", "supervised"):
                text += f"<br>Δ {cell['effect']:+.4f} (sup. sd {cell['supervised_sd']:.4f})"
            cells.append(text)
        rows.append(f"| {arm} | {compute} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + f"\n\nverifiable reward's rate on the real continuations: " \
                                    f"{table['real_verifiable_rate']:.4f}\n"
