"""Does the default learning rate suit each preset? ``python -m benchmarks.presets [--presets ...] [--lrs ...]``.

Per preset and seed, the embedded corpus is trained for ``iterations`` with each peak LR and warmup (the default
schedule and sampling; self-play off, as in ``benchmarks.learning``), and the validation loss is recorded along the
way. The preset's defaults (``azr.config.PRESET_TRAINING``) are the right ones when no other setting of the sweep ends
lower on every seed. Runs already in the output file are reused, so a sweep can be widened a few runs at a time.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from azr import AZRTrainer, default_corpus, preset
from azr.config import training_defaults
from azr.services import new_model

from .common import learning_pool
from .learning import LEAN

RESULTS = Path(__file__).resolve().parent  # presets_results_<iterations>.json
UNNAMED_WARMUP = 50  # the warmup of the runs whose label names none


def one_run(name: str, lr: float, warmup: int, seed: int, iterations: int, device: str) -> dict[int, float]:
    """Train preset ``name`` at peak LR ``lr`` after ``warmup`` iterations on ``device``; return its validation loss
    by iteration."""
    texts = default_corpus()
    trainer = AZRTrainer(*new_model(texts, preset(name), seed=seed), device=device)
    with tempfile.TemporaryDirectory(prefix="azr-presets-") as scratch:
        trainer.train_continuous(texts, iterations, scratch, seed=seed, lr=lr, warmup=warmup,
                                 val_every=max(1, iterations // 5), **LEAN)
    return {r["iteration"]: r["val_loss"] for r in trainer.history if r.get("val_loss") is not None}


def _label(lr: float, warmup: int, seed: int | None = None) -> str:
    """``lr=… [warmup=…] [seed=…]``; a warmup of ``UNNAMED_WARMUP`` is not named."""
    setting = f"lr={lr}" + ("" if warmup == UNNAMED_WARMUP else f" warmup={warmup}")
    return setting if seed is None else _seeded(setting, seed)


def _seeded(setting: str, seed: int) -> str:
    return f"{setting} seed={seed}"


def _stored(output: Path, iterations: int) -> dict[str, dict]:
    """The per-preset results an earlier run of the same length left in ``output`` (curves keyed by int)."""
    saved = json.loads(output.read_text()) if output.is_file() else {}
    if saved.get("iterations") != iterations:
        return {}
    for entry in saved["presets"].values():
        entry["curves"] = {label: {int(i): v for i, v in curve.items()} for label, curve in entry["curves"].items()}
    return saved["presets"]


def _final(curve: dict[int, float]) -> float:
    """The validation loss at the last iteration it was measured."""
    return curve[max(curve)]


def _summary(name: str, iterations: int, seeds: list[int], curves: dict[str, dict[int, float]]) -> dict:
    """The preset's final losses per setting (LR, warmup) measured on every seed, and whether its defaults for a run
    of ``iterations`` are the best of them."""
    defaults = training_defaults(preset(name), iterations)
    default = _label(defaults["lr"], defaults["warmup"])
    labels = sorted({label.rsplit(" seed=", 1)[0] for label in curves})  # the settings measured
    finals = {label: {seed: _final(curves[_seeded(label, seed)]) for seed in seeds} for label in labels
              if all(_seeded(label, seed) in curves for seed in seeds)}
    beaten_by = [label for label in finals if label != default and default in finals
                 and all(finals[label][s] < finals[default][s] for s in seeds)]
    return {"default": default, "final_val_loss": finals, "curves": curves,
            "default_is_best": default in finals and not beaten_by, "beaten_by": beaten_by}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.presets", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--warmups", type=int, nargs="+", default=[UNNAMED_WARMUP])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="runs at once, one process each (default 1)")
    parser.add_argument("--device", default="cpu", help="where the runs train (default cpu; recorded per preset)")
    parser.add_argument("--output", type=Path, help="default: benchmarks/presets_results_<iterations>.json; the "
                                                    "runs it already holds are not run again")
    args = parser.parse_args(argv)
    output = args.output or RESULTS / f"presets_results_{args.iterations}.json"
    presets = _stored(output, args.iterations)
    settings = [(lr, warmup) for lr in args.lrs for warmup in args.warmups]
    runs = [(name, lr, warmup, seed) for name in args.presets for lr, warmup in settings for seed in args.seeds
            if _label(lr, warmup, seed) not in presets.get(name, {}).get("curves", {})]
    with learning_pool(args.workers) as pool:
        new = dict(zip(runs, pool.map(one_run, *zip(*runs), [args.iterations] * len(runs),
                                                 [args.device] * len(runs)))) if runs else {}
    presets = _stored(output, args.iterations)  # again: another sweep may have added runs meanwhile
    for name in args.presets:
        curves = {**presets.get(name, {}).get("curves", {}),
                  **{_label(*run[1:]): curve for run, curve in new.items() if run[0] == name}}
        measured_now = any(run[0] == name for run in new)
        device = args.device if measured_now else presets.get(name, {}).get("device", "cpu")
        presets[name] = {**_summary(name, args.iterations, args.seeds, curves), "device": device}
        print(json.dumps({name: presets[name]["final_val_loss"]}), flush=True)
    output.write_text(json.dumps({"iterations": args.iterations, "presets": presets}, indent=1) + "\n")


if __name__ == "__main__":
    main()
