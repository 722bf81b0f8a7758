"""Does self-play do something? ``python -m benchmarks.selfplay [--quick] [--part verifiable|default|both]``.

Per seed, a supervised warm-up run (``warmup_iterations``) is resumed for ``arm_iterations`` more: once
supervised only (``self_play_every=0``) and once per self-play arm of the part (verifiable: self-play on every step
at three RL shares; default: the default settings). All arms see the same LM batches (the sampler is part of the
checkpoint), so they train on equal tokens. Measured on fixed held-out prompts (the validation windows' first quarter):

* verifiable: the mean of the verifiable reward over sampled continuations (4 per prompt, with the self-play
  sampler's settings);
  goal: >= 0.8 with self-play, validation loss at most 2 % above the supervised-only arm's.
* default: greedy seq-rep-4 (the share of repeated 4-grams in a 64-token greedy continuation); goal: at least
  30 % lower (relative) with self-play, validation loss within 1 %.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from azr import AZRTrainer, build_model, default_corpus, preset, train_tokenizer
from azr.data.corpus import TokenWindows
from azr.rl.rewards import build_rewards
from azr.rl.selfplay import PROMPT_FRACTION, generate
from azr.training.losses import validation_loss

from .common import learning_pool

OUTPUT = Path(__file__).resolve().parent / "selfplay_results.json"
SIZES = {"default": dict(warmup_iterations=200, arm_iterations=200, prompts=64, seeds=(0, 1)),
         "quick": dict(warmup_iterations=20, arm_iterations=6, prompts=8, seeds=(0,))}
BASE = dict(batch_size=16, lr=1e-3, warmup=50, lr_schedule="constant", save_every=10_000, status_every=50,
            val_every=0, val_windows=64)
VERIFIABLE = "ends_sentence(within=8)"
# The verifiable reward looks at a continuation's first 8 tokens: self-play generates just those (tokens past them
# would only add noise to the credit), 32 prompts x 8 per step (fewer samples gave noisier gradients that cost
# more loss for less reward). The RL share is swept: reward against loss.
VERIFIABLE_ARM = dict(self_play_every=1, rewards=VERIFIABLE, gen_max_new_tokens=8, self_play_batch=256,
                      num_generations=8, beta=0.04, ref_sync_every=50)
ARMS = {"verifiable": {f"rl_weight={w}": dict(VERIFIABLE_ARM, rl_weight=w) for w in (0.3, 0.35, 0.4)},
        # The default settings (self-play every 10 iterations, composite reward, RL share 0.1), and the same reward
        # on every step at twice the share: how far a stronger setting moves greedy repetition.
        "default": {"defaults": dict(self_play_every=10), "every_step_rl_weight=0.2": dict(self_play_every=1,
                                                                                             rl_weight=0.2)}}
GREEDY_TOKENS = 64
SAMPLES_PER_PROMPT = 4  # sampled continuations per held-out prompt for the verifiable reward (256 in all)


def seq_rep(ids: list[int], n: int = 4) -> float:
    """The share of the n-grams of ``ids`` that repeat an earlier one (0: none repeats)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def measure(trainer: AZRTrainer, windows: TokenWindows, prompts: int, seed: int) -> dict[str, float]:
    """Validation loss, the verifiable reward of sampled continuations and greedy seq-rep-4 on held-out prompts."""
    model, tokenizer = trainer.model, trainer.tokenizer
    prompt_ids = windows.val[:prompts, : windows.val.shape[1] // PROMPT_FRACTION].to(model.device)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sampled = generate(model, prompt_ids.repeat_interleave(SAMPLES_PER_PROMPT, dim=0), 24, 1.0, 50,
                           tokenizer.eos_token_id, tokenizer.pad_token_id)
    completions = sampled.continuations()
    reward = build_rewards(VERIFIABLE, tokenizer, windows.train.flat())
    totals, _ = reward.score([""] * len(completions), tokenizer.batch_decode(completions),
                             completion_ids=completions)
    greedy = generate(model, prompt_ids, GREEDY_TOKENS, 1.0, 1, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return {"val_loss": validation_loss(model, windows.val[:64]), "verifiable_reward": float(totals.mean()),
            "seq_rep_4": statistics.mean(seq_rep(ids) for ids in greedy.continuations())}


def one_seed(part: str, seed: int, sizes: dict[str, Any], texts, tokenizer, scratch: Path) -> dict[str, Any]:
    """Warm up, then run both arms from the warm-up checkpoint; return their measures."""
    model_config = preset("tiny", vocab_size=len(tokenizer))
    windows = TokenWindows.from_texts(texts, tokenizer, model_config.max_seq_len)
    warm = AZRTrainer(build_model(model_config, seed=seed), tokenizer, device="cpu")
    run_dir = scratch / f"{part}-{seed}"
    statuses = list(warm.train(texts, sizes["warmup_iterations"], run_dir / "warm", seed=seed, self_play_every=0,
                               **BASE))
    start = statuses[-1].checkpoint
    result: dict[str, Any] = {"warmup": measure(warm, windows, sizes["prompts"], seed)}
    total = sizes["warmup_iterations"] + sizes["arm_iterations"]
    for arm, settings in {"supervised": dict(self_play_every=0), **ARMS[part]}.items():
        began = time.monotonic()
        trainer = AZRTrainer.from_checkpoint(start, device="cpu")
        list(trainer.train(max_iterations=total, checkpoint_dir=run_dir / arm, resume_from=start,
                           **settings))
        rewards = [r["reward"] for r in trainer.history if r["reward"] is not None and
                   r["iteration"] > sizes["warmup_iterations"]]
        result[arm] = {**measure(trainer, windows, sizes["prompts"], seed), "seconds": time.monotonic() - began,
                       "self_play_reward_first_last": [rewards[0], rewards[-1]] if rewards else None}
    return result


def summary(part: str, seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Each self-play arm's goal checks per seed; the goal is met when one arm meets it on every seed."""
    checks: dict[str, dict[int, dict[str, Any]]] = {}
    for arm in ARMS[part]:
        for seed, r in seeds.items():
            ours, supervised = r[arm], r["supervised"]
            loss_change = ours["val_loss"] / supervised["val_loss"] - 1
            if part == "verifiable":
                check = {"reward_supervised": supervised["verifiable_reward"],
                         "reward_self_play": ours["verifiable_reward"], "val_loss_change": loss_change,
                         "met": ours["verifiable_reward"] >= 0.8 and loss_change <= 0.02}
            else:
                before, after = supervised["seq_rep_4"], ours["seq_rep_4"]
                lower = 1 - after / before if before else 0.0
                check = {"seq_rep_4_supervised": before, "seq_rep_4_self_play": after, "relative_drop": lower,
                         "val_loss_change": loss_change, "met": lower >= 0.3 and abs(loss_change) <= 0.01}
            checks.setdefault(arm, {})[seed] = check
    return {"checks": checks, "met": any(all(c["met"] for c in arm.values()) for arm in checks.values())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selfplay", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the benchmark itself")
    parser.add_argument("--part", choices=("verifiable", "default", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", help="run only these seeds (default: two)")
    parser.add_argument("--warmup-iterations", type=int, help="supervised iterations before the arms (default 200)")
    parser.add_argument("--arm-iterations", type=int, help="iterations of each arm (default 200)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--workers", type=int, default=1, help="seeds run at once, one process each (default 1)")
    args = parser.parse_args(argv)
    sizes = dict(SIZES["quick" if args.quick else "default"])
    sizes["seeds"] = tuple(args.seeds or sizes["seeds"])
    sizes.update({k: v for k in ("warmup_iterations", "arm_iterations") if (v := getattr(args, k)) is not None})
    texts = default_corpus()
    tokenizer = train_tokenizer(texts, preset("tiny").vocab_size)
    results = {"sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}, "base": BASE,
               "arms": ARMS}
    if args.part != "both" and args.output.exists():  # keep the other part's last results
        other = "default" if args.part == "verifiable" else "verifiable"
        results[other] = json.loads(args.output.read_text()).get(other)
    with tempfile.TemporaryDirectory(prefix="azr-selfplay-") as scratch:
        for part in (("verifiable", "default") if args.part == "both" else (args.part,)):
            with learning_pool(args.workers) as pool:
                futures = {seed: pool.submit(one_seed, part, seed, sizes, texts, tokenizer, Path(scratch))
                           for seed in sizes["seeds"]}
                seeds = {seed: future.result() for seed, future in futures.items()}
            results[part] = {"seeds": seeds, **summary(part, seeds)}
            print(json.dumps({part: results[part]}, indent=1), flush=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
