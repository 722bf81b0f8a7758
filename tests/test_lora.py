"""LoRA for base models: adapters in the checkpoint, exact pause/resume, push/pull, generate, and merge."""
from __future__ import annotations

import os
import subprocess

import pytest
import torch
from conftest import FAST
from transformers import AutoModelForCausalLM

from azr import AZRTrainer, ConfigError, services
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import ADAPTER_WEIGHTS
from azr.cli.main import main
from azr.models.lora import LoraSettings

LORA = LoraSettings(r=4, alpha=8.0)


@pytest.fixture
def base_dir(make_model, tokenizer, tmp_path):
    """A tiny Llama saved with its tokenizer, as a downloaded base model would be."""
    make_model(seed=3).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def lora_trainer(base_dir) -> AZRTrainer:
    model, tokenizer = services.new_model(None, base_model=str(base_dir), lora=LORA)
    return AZRTrainer(model, tokenizer, device="cpu")


def azr(*args: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(["azr", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def test_a_lora_run_resumes_bit_identically_pushes_pulls_generates_and_merges(base_dir, texts, tmp_path, hub_env):
    reference = lora_trainer(base_dir)
    reference.train_continuous(texts, 20, tmp_path / "reference", **FAST)
    first = lora_trainer(base_dir)
    for status in first.train(texts, 20, tmp_path / "run", **FAST):
        if status.iteration == 10 and status.state == "running":
            first.stop_training()
    paused = Checkpoint.open(tmp_path / "run" / "model_paused_10")
    assert ADAPTER_WEIGHTS in paused.files and "model.safetensors" not in paused.files
    resumed = AZRTrainer.from_checkpoint(paused, device="cpu")
    resumed.train_continuous(texts, 20, tmp_path / "run", hub_repo_id="user/lora", hub_token=hub_env["token"])
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    expected = reference.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    frozen = {name.replace(".base_layer", ""): value for name, value in resumed.model.get_base_model().state_dict()
              .items() if "lora_" not in name}
    assert frozen.keys() == base.state_dict().keys()
    assert all(torch.equal(frozen[name], value) for name, value in base.state_dict().items())  # only adapters train

    pulled = AZRTrainer.from_checkpoint("hf://user/lora/model_iter_20", device="cpu")
    for name, value in pulled.model.state_dict().items():
        assert torch.equal(value, expected[name]), name

    checkpoint = tmp_path / "run" / "model_iter_20"
    processes = {"merge": azr("merge", checkpoint, tmp_path / "merged"),
                 "generate": azr("generate", checkpoint, "--prompt", "ROMEO:", "--seed", "1", "--max-new-tokens", 8),
                 "train": azr("train", "--base-model", base_dir, "--lora-r", 2, "--lora-target", "q_proj,v_proj",
                              "--max-iterations", 2, "--batch-size", 2, "--runs-dir", tmp_path, "--run", "cli")}
    results = {name: process.communicate(timeout=300) + (process.returncode,) for name, process in processes.items()}
    for name, (_, stderr, code) in results.items():
        assert code == 0, f"{name}: {stderr}"
    assert results["generate"][0].startswith("ROMEO:")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, resumed.model(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-5)
    cli = Checkpoint.open(tmp_path / "cli" / "model_iter_2")
    assert ADAPTER_WEIGHTS in cli.files and cli.train_config.max_iterations == 2


def test_lora_needs_a_base_model_and_a_matching_target(base_dir):
    with pytest.raises(ConfigError, match="LoRA adapts a base model"):
        services.new_model(None, lora=LORA)
    with pytest.raises(ConfigError, match="LoRA target 'nothing_here' does not fit the model"):
        services.new_model(None, base_model=str(base_dir), lora=LoraSettings(r=2, target="nothing_here"))


@pytest.mark.parametrize("option", [["--lora-alpha", "32"], ["--lora-target", "q_proj,v_proj"]])
def test_a_lora_option_without_a_rank_is_refused_instead_of_ignored(base_dir, tmp_path, option, capsys):
    """LoRA is on only with --lora-r: a scaling or target given alone would train every weight unasked."""
    code = main(["train", "--base-model", str(base_dir), *option, "--max-iterations", "2",
                 "--runs-dir", str(tmp_path / "runs")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"{option[0]} needs --lora-r" in error
    assert not (tmp_path / "runs").exists()
