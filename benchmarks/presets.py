"""Does the default learning rate suit each preset? ``python -m benchmarks.presets [--presets small] [--lrs ...]``.

Per preset and seed, the embedded corpus is trained for ``iterations`` with each peak LR (the default warmup,
schedule and sampling; self-play off, as in ``benchmarks.learning``), and the validation loss is recorded along the
way. The default LR is the right one for a preset when no other LR of the sweep ends lower on every seed.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from azr import AZRTrainer, TrainConfig, default_corpus, preset
from azr.services import new_model

from .common import learning_pool
from .learning import LEAN

OUTPUT = Path(__file__).resolve().parent / "presets_results.json"


def one_run(name: str, lr: float, seed: int, iterations: int) -> dict[int, float]:
    """Train preset ``name`` at peak LR ``lr``; return its validation loss by iteration."""
    texts = default_corpus()
    trainer = AZRTrainer(*new_model(texts, preset(name), seed=seed), device="cpu")
    with tempfile.TemporaryDirectory(prefix="azr-presets-") as scratch:
        trainer.train_continuous(texts, iterations, scratch, seed=seed, lr=lr, val_every=max(1, iterations // 5),
                                 **LEAN)
    return {r["iteration"]: r["val_loss"] for r in trainer.history if r.get("val_loss") is not None}


def _final(curve: dict[int, float]) -> float:
    """The validation loss at the last iteration it was measured."""
    return curve[max(curve)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.presets", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1, help="runs at once, one process each (default 1)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    runs = [(name, lr, seed) for name in args.presets for lr in args.lrs for seed in args.seeds]
    with learning_pool(args.workers) as pool:
        curves = dict(zip(runs, pool.map(one_run, *zip(*runs), [args.iterations] * len(runs))))
    default_lr = TrainConfig().lr
    results = {"iterations": args.iterations, "default_lr": default_lr, "presets": {}}
    for name in args.presets:
        finals = {lr: {seed: _final(curves[name, lr, seed]) for seed in args.seeds} for lr in args.lrs}
        beaten_by = [lr for lr in args.lrs if lr != default_lr and default_lr in finals
                     and all(finals[lr][s] < finals[default_lr][s] for s in args.seeds)]
        results["presets"][name] = {
            "final_val_loss": {str(lr): finals[lr] for lr in args.lrs},
            "curves": {f"lr={lr} seed={seed}": curves[name, lr, seed] for lr in args.lrs for seed in args.seeds},
            "default_is_best": default_lr in finals and not beaten_by, "beaten_by": beaten_by}
        print(json.dumps({name: results["presets"][name]["final_val_loss"]}), flush=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
