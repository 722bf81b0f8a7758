"""Training throughput: AZRTrainer against the bare loop and transformers.Trainer, the self-play cadence, and
background pushes to the local Hub-compatible server (run in its own process, as a remote Hub would be)."""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
from transformers.trainer_callback import PrinterCallback

from azr import AZRTrainer
from azr.config import preset_training
from azr.models.causal_lm import model_config_of
from azr.training.precision import fused_adamw

from .common import SELF_PLAY_EVERY, Bench, Entry, alternate, progress, synchronize, tokens_per_s
from .flops import mfu_samples, peak_flops
from .loops import CONFIG, PLAIN, bare_loop, batches

HUB_USER = "user"  # the user of the server's token
TESTS = Path(__file__).resolve().parents[1] / "tests"
SERVE = ("import sys; sys.path.insert(0, sys.argv[1]); from hub_server import HubServer; "
         "server = HubServer(root=sys.argv[2]).start(); print(server.url, server.token, flush=True); "
         "sys.stdin.read(); server.stop()")


def run(bench: Bench) -> list[Entry]:
    """Alternate the bare loop, AZRTrainer (plain, full cycle, saving, saving + pushing) and transformers.Trainer."""
    sizes = bench.sizes
    data = batches(bench.windows.train, sizes.batch_size, sizes.train_steps, bench.device)
    tokens = sizes.batch_size * bench.seq_len
    losses: dict[str, list[list[float]]] = {"bare_loop": [], "azr": []}
    pushes: list[dict[str, str]] = []
    repos = itertools.count()

    def cycle() -> float:
        ends = _step_ends(_train(bench, **{**PLAIN, "self_play_every": SELF_PLAY_EVERY}))
        return (ends[-1] - ends[0]) / (len(ends) - 1)

    def saving() -> float:
        return tokens_per_s(_step_ends(_train(bench, **{**PLAIN, "save_every": sizes.save_every})), tokens)

    def pushing() -> float:
        trainer = _train(bench, **{**PLAIN, "save_every": sizes.save_every},
                         hub_repo_id=f"{HUB_USER}/bench-{next(repos)}", hub_token=token)
        pushes.append(trainer.last_status.pushes)
        return tokens_per_s(_step_ends(trainer), tokens)

    progress("training: bare loop, AZRTrainer, transformers.Trainer, full AZR cycle, saving, saving + pushing")
    with _hub_server(bench.directory("hub")) as (url, token), _hub_environment(url, bench.directory("hf-home")):
        samples = alternate({**side_by_side(bench, data, losses), "azr_full_cycle": cycle, "azr_saving": saving,
                             "azr_pushing": pushing}, sizes.repeats)
    samples["azr_plain_cycle"] = [tokens / value for value in samples["azr"]]
    peak, peak_source = peak_flops(bench.device, bench.precision)
    model = bench.model()
    mfu = {f"{name}_mfu": mfu_samples(samples[name], model, bench.seq_len, peak) for name in ("azr", "bare_loop")}
    window = f"steps 2..{sizes.train_steps} of each run, batch {sizes.batch_size} x {bench.seq_len} tokens"
    pushed = [sum(state.startswith("pushed") for state in run.values()) for run in pushes]
    loss_gap = largest_loss_difference(losses)
    return [
        bench.entry("train_tokens_per_s", samples, "tokens/s", "azr", "bare_loop", (">=", 0.97), window=window,
                    max_loss_difference=loss_gap, precision=bench.precision),
        bench.entry("train_mfu", mfu, "% of peak", "azr_mfu", "bare_loop_mfu", window=window,
                    precision=bench.precision, peak_tflops=peak / 1e12, peak_source=peak_source),
        bench.entry("train_vs_hf_trainer", samples, "tokens/s", "azr", "hf_trainer", (">=", 1.0), window=window,
                    hf_trainer="logging_steps=1, no eval, no saving; labels = inputs (127 predicted tokens of 128)"),
        bench.entry("azr_step", samples, "s/iteration", "azr_full_cycle", "azr_plain_cycle", window=window,
                    self_play_every=SELF_PLAY_EVERY, self_play_batch=CONFIG.self_play_batch,
                    gen_max_new_tokens=CONFIG.gen_max_new_tokens),
        bench.entry("push_overhead", samples, "tokens/s", "azr_pushing", "azr_saving", (">=", 0.95), window=window,
                    save_every=sizes.save_every, checkpoints_pushed_per_run=pushed),
    ]


def side_by_side(bench: Bench, data: list[torch.Tensor],
                 losses: dict[str, list[list[float]]]) -> dict[str, Callable[[], float]]:
    """The contenders of the plain comparison: the bare loop, AZRTrainer (``PLAIN``) and transformers.Trainer on the
    same batches, each returning its tokens/s; the bare loop's and AZRTrainer's losses go to ``losses``."""
    tokens = bench.sizes.batch_size * bench.seq_len

    def bare() -> float:
        ends, values = bare_loop(bench.model(), data, bench.device, bench.precision)
        losses["bare_loop"].append([float(loss) for loss in values])
        return tokens_per_s(ends, tokens)

    def azr() -> float:
        trainer = _train(bench, **PLAIN)
        losses["azr"].append([record["loss"] for record in trainer.history])
        return tokens_per_s(_step_ends(trainer), tokens)

    return {"bare_loop": bare, "azr": azr, "hf_trainer": lambda: _hf_trainer(bench, data)}


def largest_loss_difference(losses: dict[str, list[list[float]]]) -> float:
    """The largest difference between AZRTrainer's and the bare loop's loss at the same step of the same round."""
    return max(abs(a - b) for runs in zip(losses["azr"], losses["bare_loop"]) for a, b in zip(*runs))


def _train(bench: Bench, **settings: Any) -> AZRTrainer:
    """Run AZRTrainer for the benchmark's steps on the shared data (a fresh model and directory) and return it."""
    trainer = AZRTrainer(bench.model(), bench.tokenizer, device=bench.device)
    directory = bench.directory("azr")
    try:
        for _ in trainer.train(bench.texts, bench.sizes.train_steps, directory, batch_size=bench.sizes.batch_size,
                               seq_len=bench.seq_len, precision=bench.precision, **settings):
            pass
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return trainer


def _step_ends(trainer: AZRTrainer) -> list[float]:
    return [record["time"] for record in trainer.history]


class _StepEnds(TrainerCallback):
    """Records when each transformers.Trainer step ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step in (1, args.max_steps):
            synchronize(self.device)
        self.ends.append(time.time())


def _hf_trainer(bench: Bench, data: list[torch.Tensor]) -> float:
    """Train the same model on the same batches, in the same order, with transformers.Trainer; return tokens/s."""
    ends = hf_train(bench.model(), data, bench.directory("hf"), bench.device, bench.precision)
    return tokens_per_s(ends, bench.sizes.batch_size * bench.seq_len)


def hf_train(model: torch.nn.Module, data: list[torch.Tensor], directory: Path, device: torch.device,
             precision: str, save_steps: int | None = None) -> list[float]:
    """Train ``model`` one step per batch of ``data``, in order, with transformers.Trainer (AZRTrainer's AdamW
    settings, kernel and LR, a constant schedule; a checkpoint every ``save_steps`` steps when given) in
    ``directory``, which is removed after; return when each step ended."""
    rows = [{"input_ids": row[:-1], "labels": row[:-1]} for batch in data for row in batch.cpu()]
    fused = fused_adamw(device)  # as AZRTrainer's new runs and the bare loop
    args = TrainingArguments(
        output_dir=str(directory), max_steps=len(data), per_device_train_batch_size=len(data[0]),
        learning_rate=preset_training(model_config_of(model))["lr"], weight_decay=CONFIG.weight_decay,
        adam_beta2=0.95, max_grad_norm=CONFIG.grad_clip, optim="adamw_torch_fused" if fused else "adamw_torch",
        lr_scheduler_type="constant", logging_steps=1, eval_strategy="no", report_to="none",
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        disable_tqdm=True, train_sampling_strategy="sequential", dataloader_drop_last=True, seed=CONFIG.seed,
        use_cpu=device.type == "cpu", bf16=precision == "bf16", fp16=precision == "fp16",
    )
    stamps = _StepEnds(device)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=default_data_collator,
                      callbacks=[stamps])
    trainer.remove_callback(PrinterCallback)  # logs are still made every step, just not printed
    try:
        trainer.train()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return stamps.ends


@contextlib.contextmanager
def _hub_server(root: Path) -> Iterator[tuple[str, str]]:
    """Serve tests/hub_server.py's HubServer from another process; yield its URL and token."""
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(TESTS), str(root)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        url, token = process.stdout.readline().split()
        yield url, token
    finally:
        process.stdin.close()
        process.wait(timeout=60)


@contextlib.contextmanager
def _hub_environment(url: str, home: Path) -> Iterator[None]:
    """Point azr.hub.sync (which reads the environment at call time) at the server, then restore the environment."""
    values = {"HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "0",
              "HF_HUB_DISABLE_TELEMETRY": "1"}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
