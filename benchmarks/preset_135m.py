"""The 135m preset (SmolLM2-135M's architecture, 134.5 M parameters) against transformers.Trainer: ``python -m
benchmarks --only 135m`` (its parts alone: ``--only 135m_training``, ``135m_checkpoints`` or ``135m_memory``).

Each comparison alternates its contenders round by round (:func:`~benchmarks.common.alternate`):

- training tokens/s of AZRTrainer (self-play, validation and saves off, a constant LR) against the bare loop and
  ``transformers.Trainer`` on the same batches, in the same precision, with the same AdamW settings and kernel
  (fused; :func:`benchmarks.training.side_by_side`), and the MFU of AZRTrainer and the bare loop;
- checkpoint save (the trainer's, sha256 and read-back included) against the Trainer's save + fsync, and the
  verified load against the Trainer's load, at the base preset (10.5 M) and at 135m
  (:func:`benchmarks.checkpoints.save_and_load`);
- in fresh processes, the peak RSS of AZRTrainer with background saves (the default writer, and the writer process's
  staged copy) against the Trainer saving as often, with the seconds each background save blocked, and the RSS after
  the run (the trainer dropped, the model kept) against the RSS before it (``python -m benchmarks.processes rss``);
- LoRA on a saved 135m base model: the adapter checkpoint's size against the full checkpoint's, and its save and
  load against PEFT + the Trainer's;
- on an accelerator only, the throughput with a background save every 10 iterations against none
  (:mod:`benchmarks.async_saves`; on a CPU a run long enough for its steady-state window takes minutes per round).

The 135m model has the preset's vocabulary (49,152 rows, as SmolLM2's tokenizer) while the bench's tokenizer is
smaller: the costs are a 135 M model's, the unused rows are trained as a real model's rare tokens are.
"""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from azr import AZRTrainer, build_model, preset, services
from azr.models.lora import LoraSettings

from .async_saves import _throughput
from .checkpoints import file_sizes, larger_checkpoint, save_and_load, subject, versus_trainer
from .common import Bench, Entry, alternate, paired_ratio, progress
from .flops import mfu_samples, peak_flops
from .loops import PLAIN, batches
from .processes import child_args, run_python
from .training import largest_loss_difference, side_by_side


@dataclasses.dataclass(frozen=True)
class Shape:
    """How much one training run of the group does: its batch, window length and iterations."""

    batch_size: int
    seq_len: int
    steps: int  # of each tokens/s run; the first step is outside the timed window


# A CPU round of three contenders takes about a minute on one free thread; an accelerator gets a GPU-sized batch.
SHAPES = {"cpu": Shape(batch_size=1, seq_len=64, steps=4), "accelerator": Shape(batch_size=8, seq_len=1024, steps=21)}
RSS_STEPS, RSS_SAVE_EVERY = 4, 2  # the memory runs: saves after iterations 2 and 4 (the last)
PROCESS_ROUNDS = 2  # of the memory runs (a fresh process each; memory, unlike time, does not depend on the load)
STAGED_WRITER = "process"  # the writer that stages a copy in memory, as the CPU default did with a free CPU
ASYNC_STEPS, ASYNC_SAVE_EVERY = 41, 10
LORA = LoraSettings()  # the CLI's defaults: rank 8, alpha 16, every linear module
TRAINER_CONTENDERS = ("AZRTrainer (self-play, validation and saves off, constant LR), the bare loop, "
                      "transformers.Trainer")


def run(bench: Bench) -> list[Entry]:
    """Every comparison of the group."""
    at_135m = _at_135m(bench)
    entries = [*_training(at_135m), *run_checkpoints(bench), *_memory(at_135m)]
    if bench.device.type != "cpu":
        entries.append(_background_saves(at_135m))
    return entries


def run_training(bench: Bench) -> list[Entry]:
    """Only the training comparison (``--only 135m_training``): a few minutes instead of the group's quarter hour."""
    return _training(_at_135m(bench))


def run_memory(bench: Bench) -> list[Entry]:
    """Only the memory comparison (``--only 135m_memory``): peak RSS with background saves, and RSS after the run."""
    return _memory(_at_135m(bench))


def run_checkpoints(bench: Bench) -> list[Entry]:
    """Only the checkpoint comparisons (``--only 135m_checkpoints``): save and load at base and 135m, and LoRA's."""
    at_135m = _at_135m(bench)
    base, _ = _checkpoints(bench.at(preset("base"), 1, bench.seq_len, 2), "base")
    full, full_bytes = _checkpoints(at_135m, "135m")
    return [*base, *full, *_lora(at_135m, full_bytes)]


def _at_135m(bench: Bench) -> Bench:
    """The bench at the 135m preset, with the device's training shape."""
    shape = SHAPES["cpu" if bench.device.type == "cpu" else "accelerator"]
    return bench.at(preset("135m"), shape.batch_size, shape.seq_len, shape.steps)


def _training(at: Bench) -> list[Entry]:
    """Tokens/s of AZRTrainer against the bare loop and transformers.Trainer, and the MFU of the first two."""
    progress(f"135m training: {TRAINER_CONTENDERS}; batch {at.sizes.batch_size} x {at.seq_len} tokens, "
             f"{at.sizes.train_steps} steps, {at.precision}")
    data = batches(at.windows.train, at.sizes.batch_size, at.sizes.train_steps, at.device)
    losses: dict[str, list[list[float]]] = {"bare_loop": [], "azr": []}
    samples = alternate(side_by_side(at, data, losses), at.sizes.repeats)
    peak, peak_source = peak_flops(at.device, at.precision)
    model = at.model()
    mfu = {f"{name}_mfu": mfu_samples(samples[name], model, at.seq_len, peak) for name in ("azr", "bare_loop")}
    settings = dict(window=f"steps 2..{at.sizes.train_steps} of each run, batch {at.sizes.batch_size} x {at.seq_len} "
                    "tokens", precision=at.precision, parameters=sum(p.numel() for p in model.parameters()))
    return [
        at.entry("train_tokens_per_s@135m", samples, "tokens/s", "azr", "bare_loop", (">=", 0.97), **settings,
                 max_loss_difference=largest_loss_difference(losses)),
        at.entry("train_mfu@135m", mfu, "% of peak", "azr_mfu", "bare_loop_mfu", **settings,
                 peak_tflops=peak / 1e12, peak_source=peak_source),
        at.entry("train_vs_hf_trainer@135m", samples, "tokens/s", "azr", "hf_trainer", (">=", 1.0), **settings,
                 hf_trainer="logging_steps=1, no eval, no saving; AdamW with the same kernel (fused), LR, betas, decay "
                            "and clipping"),
    ]


def _checkpoints(at: Bench, label: str) -> tuple[list[Entry], int]:
    """Save and load against transformers.Trainer's at the bench's model; return the entries and the checkpoint's
    bytes."""
    trainer, source = larger_checkpoint(at)
    current = subject(at, trainer.model, source)
    progress(f"{label} checkpoints ({current.describe()}): save, Trainer's save (as is, + fsync), load, Trainer's load")
    samples, hf_bytes = save_and_load(at, current, 1, raw=False)
    size = sum(file_sizes(source).values())
    model = dict(model=current.describe(), bytes=size, operations_per_sample=1, page_cache="warm")
    return versus_trainer(at, samples, model, hf_bytes, f"@{label}"), size


def _memory(at: Bench) -> list[Entry]:
    """Peak RSS of AZRTrainer with background saves against the Trainer's, and the RSS after the run, each in a
    fresh process per round."""
    runs: dict[str, list[dict[str, float]]] = {"azr_saving": [], "azr_staged_saving": [], "azr_sync_saving": [],
                                               "hf": []}

    def child(kind: str, *writer: str) -> float:
        result = run_python("-m", "benchmarks.processes", "rss", kind.replace("_staged", ""),
                            str(at.directory("rss")), *child_args(at, at.model_config, at.sizes.batch_size, RSS_STEPS),
                            "--seq-len", str(at.seq_len), "--save-every", str(RSS_SAVE_EVERY), *writer)
        runs[kind].append(result)
        return result["maxrss_mb"]

    progress(f"135m memory: AZRTrainer with background saves (the default writer, and {STAGED_WRITER} staging a "
             f"copy) against transformers.Trainer saving as often, and AZRTrainer saving at once ({RSS_STEPS} "
             f"iterations, a save every {RSS_SAVE_EVERY}), fresh processes")
    samples = alternate({"azr_background_saves": lambda: child("azr_saving"), "hf_trainer": lambda: child("hf"),
                         "azr_staged_copy": lambda: child("azr_staged_saving", "--writer", STAGED_WRITER),
                         "azr_saves_now": lambda: child("azr_sync_saving")}, PROCESS_ROUNDS, warmup=0)
    after = {"azr_after_run": [r["after_release_mb"] for r in runs["azr_saving"]],
             "azr_before_run": [r["start_mb"] for r in runs["azr_saving"]],
             "hf_after_run": [r["after_release_mb"] for r in runs["hf"]],
             "hf_before_run": [r["start_mb"] for r in runs["hf"]]}
    settings = dict(iterations=RSS_STEPS, save_every=RSS_SAVE_EVERY, batch_size=at.sizes.batch_size,
                    seq_len=at.seq_len, runs={name: values[0] for name, values in runs.items()})
    return [
        at.entry("peak_rss_vs_hf_trainer@135m", samples, "MB", "azr_background_saves", "hf_trainer", ("<=", 1.25),
                 **settings, measured="VmHWM of the training process (a writer process's memory: runs.*.writer)",
                 saves_now_mb=statistics.median(samples["azr_saves_now"]),
                 saves_now_ratio=paired_ratio(samples["azr_saves_now"], samples["hf_trainer"]),
                 staged_copy_writer=STAGED_WRITER, staged_copy_mb=statistics.median(samples["azr_staged_copy"]),
                 staged_copy_ratio=paired_ratio(samples["azr_staged_copy"], samples["hf_trainer"]),
                 blocking_s={kind: [r["blocking_s"] for r in runs[kind]] for kind in ("azr_saving",
                                                                                      "azr_staged_saving")}),
        at.entry("rss_after_run@135m", after, "MB", "azr_after_run", "azr_before_run", ("<=", 1.05), **settings,
                 hf_trainer_ratio=statistics.median(a / b for a, b in zip(after["hf_after_run"],
                                                                          after["hf_before_run"])),
                 measured="VmRSS after the run, the trainer dropped and the model kept, gc and malloc_trim, against "
                          "VmRSS before train() with the model built"),
    ]


def _lora(at: Bench, full_bytes: int) -> list[Entry]:
    """A LoRA checkpoint of a saved 135m base model: its size against the full checkpoint's (``full_bytes``), and
    its save and load against PEFT + transformers.Trainer's."""
    base = at.directory("base-135m")
    build_model(at.model_config, seed=0).save_pretrained(base)
    at.tokenizer.save_pretrained(base)
    model, tokenizer = services.new_model(None, base_model=str(base), lora=LORA)
    trainer = AZRTrainer(model, tokenizer, device=at.device)
    for _ in trainer.train(at.texts, 2, at.directory("lora"), batch_size=at.sizes.batch_size, seq_len=at.seq_len,
                           **PLAIN):
        pass
    source = Path(trainer.last_status.checkpoint)
    current = subject(at, trainer.model, source)
    progress(f"135m LoRA checkpoints (rank {LORA.r}, {LORA.target}): save, PEFT + Trainer's save, load, its load")
    samples, hf_bytes = save_and_load(at, current, 1, raw=False)
    adapter_bytes = sum(file_sizes(source).values())
    sizes = {"adapter_checkpoint": [adapter_bytes / 2**20], "full_checkpoint": [full_bytes / 2**20]}
    lora = dict(rank=LORA.r, alpha=LORA.alpha, target=LORA.target, adapter_files=file_sizes(source),
                trainable_parameters=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))
    return [
        at.entry("lora_checkpoint_size@135m", sizes, "MB", "adapter_checkpoint", "full_checkpoint", ("<=", 0.05),
                 **lora),
        *versus_trainer(at, samples, {**lora, "hf_trainer_model": "the same peft model"}, hf_bytes, "@135m_lora"),
    ]


def _background_saves(at: Bench) -> Entry:
    """Throughput with a background save every ``ASYNC_SAVE_EVERY`` iterations against none (an accelerator)."""
    progress(f"135m background saves: a save every {ASYNC_SAVE_EVERY} iterations against none, {ASYNC_STEPS} "
             "iterations")
    contenders = {name: _throughput(at, at.model, at.sizes.batch_size, ASYNC_STEPS, every, True, "auto", None)
                  for name, every in (("no_saves", 10**9), ("async_saves", ASYNC_SAVE_EVERY))}
    samples = alternate(contenders, at.sizes.repeats)
    return at.entry("async_save_throughput@135m", samples, "it/s", "async_saves", "no_saves", (">=", 0.98),
                    save_every=ASYNC_SAVE_EVERY, iterations=ASYNC_STEPS, batch_size=at.sizes.batch_size,
                    precision=at.precision)
