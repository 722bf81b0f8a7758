"""The memory a run needs, estimated before it starts: parameters counted exactly for the model that is built, and
the 135m preset at the figures people know (134.5 M parameters, about 1.6 GB of weights and AdamW state)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from azr.app.api import AppAPI
from azr.app.jobs import TrainingJob
from azr.config import PRESETS
from azr.app.render import render_memory
from azr.config.memory import estimate, largest_batch, parameter_count
from azr.models.causal_lm import build_model
from azr.training import session, status
from azr.training.status import available_memory_bytes


@pytest.mark.parametrize("config", [PRESETS["tiny"], dataclasses.replace(PRESETS["tiny"], num_kv_heads=2,
                                                                         tie_embeddings=True)])
def test_the_parameter_count_is_the_built_models(config):
    assert parameter_count(config) == sum(p.numel() for p in build_model(config).parameters())


def test_the_135m_preset_needs_about_1_6_gb_for_weights_and_adamw_state():
    memory = estimate(PRESETS["135m"], batch_size=4).as_dict()
    assert 134.4e6 < memory["parameters"] < 134.6e6
    assert 1.55e9 < memory["weights_and_optimizer_bytes"] < 1.65e9
    assert memory["total_bytes"] > memory["weights_and_optimizer_bytes"] + memory["activations_bytes"]
    assert estimate(PRESETS["135m"], batch_size=8).activations_bytes == 2 * memory["activations_bytes"]



def test_a_staged_copy_adds_the_weights_and_adamw_state():
    """A background save that stages a copy (on an accelerator, or with AZR_SAVE_WRITER process or thread) holds the
    weights and AdamW state twice while training goes on, so the estimate counts the copy."""
    staged = estimate(PRESETS["135m"], batch_size=4, staged_copy=True)
    plain = estimate(PRESETS["135m"], batch_size=4)
    assert staged.staged_copy_bytes == staged.weights_bytes + staged.optimizer_bytes
    assert plain.staged_copy_bytes == 0
    assert staged.total_bytes == plain.total_bytes + staged.staged_copy_bytes


@pytest.mark.parametrize("writer, staged", [(None, False), ("pagecache", False), ("process", True), ("thread", True)])
def test_the_apps_estimate_counts_a_staged_copy_only_where_background_saves_make_one(writer, staged, tmp_path,
                                                                                     monkeypatch):
    """On a CPU background saves go through the page cache by default and stage no copy (BENCHMARKS.md, "Background
    saves through the page cache"); the writers that stage one make the app's estimate count it."""
    if writer is None:
        monkeypatch.delenv("AZR_SAVE_WRITER", raising=False)
    else:
        monkeypatch.setenv("AZR_SAVE_WRITER", writer)
    answer = AppAPI(TrainingJob(runs_root=tmp_path)).estimate_memory(preset="135m")
    assert (answer["staged_copy_bytes"] == answer["weights_and_optimizer_bytes"]) is staged
    assert staged or answer["staged_copy_bytes"] == 0


def test_the_estimate_is_for_the_windows_a_run_trains_on(tmp_path):
    """A run whose model reads up to 2,048 tokens trains on windows of 256 unless told otherwise, so the app's
    estimate counts activations for those windows: counted for 2,048 it put a 135m run at batch 16 at 57 GB instead
    of 9 (at batch 4 a run peaked at 4.3 GB: the estimate says 3.9 GB, and said 15.9 GB)."""
    model = dataclasses.replace(PRESETS["tiny"], max_seq_len=2048)
    run_window = session.resolve_config(None, 10, {}, build_model(model)).seq_len
    assert run_window == 256
    answer = AppAPI(TrainingJob(runs_root=tmp_path)).estimate_memory(preset="135m", batch_size=16)
    assert answer["seq_len"] == run_window
    assert answer["activations_bytes"] == estimate(PRESETS["135m"], 16, seq_len=run_window).activations_bytes
    assert answer["total_bytes"] < 12e9
    assert estimate(PRESETS["135m"], 16, seq_len=2048).activations_bytes == 8 * answer["activations_bytes"]


def test_the_largest_batch_that_fits_is_the_largest_whose_estimate_fits():
    config = PRESETS["135m"]
    room = estimate(config, 6).total_bytes + 1
    assert largest_batch(config, room) == 6
    assert largest_batch(config, estimate(config, 6).total_bytes - 1) == 5
    assert largest_batch(config, estimate(config, 1).total_bytes - 1) == 0  # not even one window
    assert largest_batch(config, room, staged_copy=True) < 6


def test_the_machines_free_memory_is_read_from_the_kernel():
    """What a run could use now: the kernel's available memory, or less when a container's limit is nearer."""
    free = available_memory_bytes(torch.device("cpu"))
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        total = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")) * 1024
    assert free is not None and 0 < free <= total


def test_an_estimate_beyond_the_machines_memory_says_which_batch_fits(tmp_path):
    api = AppAPI(TrainingJob(runs_root=tmp_path))
    answer = api.estimate_memory(preset="135m", batch_size=100_000)  # ~56 TB: more than any machine here
    assert answer["total_bytes"] > answer["available_bytes"] > 0
    fits = answer["largest_batch_that_fits"]
    assert 0 < fits < 100_000
    assert estimate(PRESETS["135m"], fits).total_bytes <= answer["available_bytes"]
    line = render_memory(answer)
    assert f"more than the {answer['available_bytes'] / 1e9:,.2f} GB free on this machine" in line
    assert f"a batch of {fits} fits" in line
    assert "free on this machine" not in render_memory(api.estimate_memory(preset="tiny", batch_size=1))


def test_a_containers_limit_counts_without_its_reclaimable_page_cache(tmp_path, monkeypatch):
    """A Space's container sees the host's memory in /proc/meminfo; its cgroup says what it may use. Page cache the
    kernel reclaims first (checkpoints just written) does not count as used, as ``docker stats`` counts it."""
    files = {name: tmp_path / name for name in ("memory.max", "memory.current", "memory.stat")}
    files["memory.current"].write_text("3000000000\n")
    files["memory.stat"].write_text("anon 1500000000\nfile 1400000000\ninactive_file 1000000000\n")
    monkeypatch.setattr(status, "CGROUPS", ((*map(str, files.values()), "inactive_file"),))
    files["memory.max"].write_text("4000000000\n")
    assert status.container_headroom_bytes() == 2_000_000_000
    assert available_memory_bytes(torch.device("cpu")) <= 2_000_000_000
    files["memory.max"].write_text("max\n")  # no limit
    assert status.container_headroom_bytes() is None
