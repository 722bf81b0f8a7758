"""Learning, not speed: the new defaults against the old ones, and extending a finished run (re-warm against
staying at the final LR), on the embedded corpus with two seeds (``python -m benchmarks.learning``).

Self-play is off in these runs (both sides alike) to keep them lean: the goals are about the LR and the data.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from azr import AZRTrainer, TrainConfig
from azr.checkpoints.checkpoint import Checkpoint
from azr.config import training_defaults
from azr.config.schedule import REWARM_FRACTION

from .common import DEFAULT, Bench, Entry, progress

OLD_DEFAULTS: dict[str, Any] = dict(lr=3e-4, warmup=0, sampling="windows")  # main's before issue 10
LEAN: dict[str, Any] = dict(self_play_every=0, save_every=10**9, status_every=10**9, keep_best=False)
SEEDS = (0, 1)


def _val_curve(trainer: AZRTrainer) -> dict[int, float]:
    return {r["iteration"]: r["val_loss"] for r in trainer.history if r.get("val_loss") is not None}


def _train(bench: Bench, directory: Path, iterations: int, seed: int, val_every: int, **settings) -> AZRTrainer:
    trainer = AZRTrainer(bench.model(), bench.tokenizer, device=bench.device)
    trainer.train_continuous(bench.texts, iterations, directory, seed=seed, val_every=val_every,
                             **{**LEAN, **settings})
    return trainer


def _extend(checkpoint: Path, directory: Path, target: int, val_every: int, extend: str,
            device: torch.device) -> AZRTrainer:
    trainer = AZRTrainer.from_checkpoint(checkpoint, device=device)
    trainer.train_continuous(None, target, directory, resume_from=checkpoint, val_every=val_every,
                             extend_schedule=extend, **LEAN)
    return trainer


def run(bench: Bench, iterations: int = 600, goal_iterations: int = 200, seeds=SEEDS) -> list[Entry]:
    """Per seed: old defaults and new defaults for ``iterations``; the new run extended to twice that with
    the re-warm and with the final LR. Returns the two entries (values: medians over the seeds)."""
    val_every = max(1, iterations // 24)
    reached, old_final, extension = [], [], []
    for seed in seeds:
        started = time.monotonic()
        old = _val_curve(_train(bench, bench.directory("old"), iterations, seed, val_every, **OLD_DEFAULTS))
        new_dir = bench.directory("new")
        new_trainer = _train(bench, new_dir, iterations, seed, val_every, save_every=iterations)
        new = _val_curve(new_trainer)
        target = old[iterations]
        first = min((i for i, loss in new.items() if loss <= target), default=None)
        reached.append(first if first is not None else float("inf"))
        old_final.append({"seed": seed, "old_final": target, "new_final": new[iterations], "old_curve": old,
                          "new_curve": new, "new_reached_at": first})
        results: dict[str, Any] = {"seed": seed}
        for extend in ("rewarm", "final_lr"):
            run_dir = bench.directory(extend)
            extended = _extend(new_dir / f"model_iter_{iterations}", run_dir, 2 * iterations, val_every, extend,
                               bench.device)
            lrs = [new_trainer.history[-1]["lr"]] + [r["lr"] for r in extended.history[iterations:]]
            results[extend] = {"final_val_loss": _val_curve(extended)[2 * iterations],
                               "largest_lr_step": max(abs(b - a) for a, b in zip(lrs, lrs[1:])),
                               "lr_max": max(lrs)}
        plan = Checkpoint.open(new_dir / f"model_iter_{iterations}").plan()
        ramp = max(1, round(REWARM_FRACTION * iterations))
        results["ramp_step_bound"] = (plan.peak_lr - plan.final_lr) / ramp
        extension.append(results)
        progress(f"learning seed {seed}: {time.monotonic() - started:.0f} s; {json.dumps(results)}")
    defaults = Entry("learning_defaults_iterations", statistics.median(reached), "iterations", len(seeds),
                     bench.machine, bench.sizes.name, goal=f"<= {goal_iterations}",
                     met=all(r <= goal_iterations for r in reached),
                     samples={"new_defaults": reached},
                     detail={"runs": old_final, "new": _new_defaults(bench, iterations)})
    lower = [e["rewarm"]["final_val_loss"] < e["final_lr"]["final_val_loss"] for e in extension]
    smooth = [e["rewarm"]["largest_lr_step"] <= e["ramp_step_bound"] * (1 + 1e-9) for e in extension]
    values = [e["rewarm"]["final_val_loss"] for e in extension]
    baselines = [e["final_lr"]["final_val_loss"] for e in extension]
    extension_entry = Entry("learning_extension_val_loss", statistics.median(values), "nats", len(seeds),
                            bench.machine, bench.sizes.name, baseline=statistics.median(baselines),
                            ratio=statistics.median(v / b for v, b in zip(values, baselines)),
                            compared_with="final_lr", goal="lower than final_lr, no LR step beyond the ramp",
                            met=all(lower) and all(smooth), samples={"rewarm": values, "final_lr": baselines},
                            detail={"seeds": extension})
    return [defaults, extension_entry]


def _new_defaults(bench: Bench, iterations: int) -> dict[str, Any]:
    return {**training_defaults(bench.sizes.model, iterations), "sampling": TrainConfig().sampling}


def main(argv: list[str] | None = None) -> None:
    """Run the learning benchmark alone; print its entries as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--goal-iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="azr-learning-") as scratch:
        bench = Bench(DEFAULT, torch.device("cpu"), args.threads, Path(scratch), "default")
        entries = run(bench, args.iterations, args.goal_iterations, args.seeds)
    text = json.dumps([e.as_dict() for e in entries], indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
