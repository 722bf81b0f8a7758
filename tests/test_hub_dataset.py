"""Hub datasets as a corpus: train on a dataset repo of the local Hub server, pause, resume elsewhere on the same
revision (a later commit does not change the data), offline from the cache, and clear errors."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from test_cli import FAST, TINY, losses

from azr import AZRTrainer, ConfigError, default_corpus, preset, services
from azr.app.api import AppAPI
from azr.app.jobs import TrainingJob
from azr.checkpoints.checkpoint import Checkpoint
from azr.data.corpus import fingerprint
from azr.data.tokens import TOKENS_DIR

CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train.parquet
  - split: empty
    path: data/empty.parquet
---
"""
SIZE = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32, vocab_size=300)
SETTINGS = dict(batch_size=4, save_every=10, lr_schedule="constant", self_play_every=5)
PAUSED_RUN = f"""
import sys
from azr import AZRTrainer, preset, services
from azr.data.hub_datasets import HubDataset
dataset = HubDataset.parse("user/corpus")
model, tokenizer = services.new_model(dataset.texts(), preset("tiny", **{SIZE}), seed=0)
trainer = AZRTrainer(model, tokenizer, device="cpu")
for status in trainer.train(dataset=dataset, max_iterations=20, checkpoint_dir=sys.argv[1], **{SETTINGS}):
    if status.iteration >= 10 and status.state == "running":
        trainer.stop_training()
print(status.message)
"""
ERRORS = """
import json
from azr import DataError
from azr.data.hub_datasets import HubDataset
cases = {"column": dict(text_column="body"), "empty": dict(split="empty"), "split": dict(split="nope"),
         "cap": dict(max_mb=0.001), "numbers": dict(text_column="length")}
messages = {}
for name, options in cases.items():
    try:
        HubDataset.parse("user/corpus", **options).texts()
    except DataError as exc:
        messages[name] = str(exc)
print(json.dumps(messages))
"""


def commit(hf: HfApi, texts: list[str], message: str) -> str:
    """Commit ``user/corpus``: parquet files of a train split and an "empty" one (blank texts: ``datasets``
    cannot build a split of 0 rows)."""
    train, empty = io.BytesIO(), io.BytesIO()
    pq.write_table(pa.table({"text": texts, "length": [len(t) for t in texts]}), train)
    pq.write_table(pa.table({"text": ["", " \n"], "length": [0, 2]}), empty)
    operations = [CommitOperationAdd("README.md", CARD.encode()),
                  CommitOperationAdd("data/train.parquet", train.getvalue()),
                  CommitOperationAdd("data/empty.parquet", empty.getvalue())]
    return hf.create_commit("user/corpus", operations, commit_message=message, repo_type="dataset").oid


def start(*args: object, home, offline: bool = False, python: bool = False) -> subprocess.Popen:
    """Start ``azr ARGS`` (or ``python -c ARGS``) in a fresh process with its own HF cache."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "HF_HOME": str(home),
           "HF_HUB_OFFLINE": "1" if offline else "0"}
    command = [sys.executable, "-c"] if python else ["azr"]
    return subprocess.Popen([*command, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


TEXTS = [default_corpus()[0][i : i + 2000] for i in range(0, 30_000, 2000)]


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for a process started by :func:`start` (generously: these import torch and datasets)."""
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def dataset_repo(hub_env, hub_server):
    """``user/corpus`` on the local Hub server; returns the client and the sha of its first data commit."""
    hf = HfApi(endpoint=hub_server.url, token=hub_server.token)
    hf.create_repo("user/corpus", repo_type="dataset")
    return hf, commit(hf, TEXTS, "first texts")


def test_a_dataset_run_resumes_elsewhere_on_its_revision_and_offline(dataset_repo, tmp_path):
    hf, first = dataset_repo
    paused = start(PAUSED_RUN, tmp_path / "run", home=tmp_path / "home_a", python=True)
    model, tokenizer = services.new_model(TEXTS, preset("tiny", **SIZE), seed=0)  # meanwhile, on the same texts
    reference = AZRTrainer(model, tokenizer, device="cpu")
    reference.train_continuous(TEXTS, 20, tmp_path / "ref", **SETTINGS)
    paused = finish(paused)
    assert paused.returncode == 0, paused.stderr
    assert (tmp_path / "run" / "model_paused_10").is_dir()
    [token_file] = (tmp_path / "run" / TOKENS_DIR).glob("*.tokens")  # the dataset's ids, tokenised once
    tokenised = token_file.stat().st_ino, token_file.stat().st_mtime_ns
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["corpus"]["dataset"] == "user/corpus" and run["corpus"]["revision"] == first

    later = commit(hf, [t.upper() for t in default_corpus()[0][30_000:60_000].split("\n\n")], "other texts")
    assert later != first
    resumed = finish(start("resume", tmp_path / "run" / "model_paused_10", "--max-iterations", 20,
                           home=tmp_path / "home_b"))  # a fresh process, an empty cache
    assert resumed.returncode == 0, resumed.stderr
    assert (token_file.stat().st_ino, token_file.stat().st_mtime_ns) == tokenised  # the resume read them back
    assert losses(tmp_path / "run" / "model_iter_20") == [r["loss"] for r in reference.history]
    assert Checkpoint.open(tmp_path / "run" / "model_iter_20").corpus["revision"] == first

    offline = start("resume", tmp_path / "run" / "model_iter_20", "--max-iterations", 25, home=tmp_path / "home_b",
                    offline=True)
    uncached = start("resume", tmp_path / "run" / "model_iter_20", "--max-iterations", 25, "--run", "elsewhere",
                     "--runs-dir", tmp_path, home=tmp_path / "home_c", offline=True)
    offline, uncached = finish(offline), finish(uncached)
    assert offline.returncode == 0, offline.stderr
    assert uncached.returncode == 2 and uncached.stderr.count("\n") == 1
    assert "Cannot load dataset 'user/corpus'" in uncached.stderr


def test_the_cli_trains_on_a_jsonl_dataset_and_bad_choices_are_one_clear_sentence(dataset_repo, tmp_path):
    hf, _ = dataset_repo
    hf.create_repo("user/lines", repo_type="dataset")
    lines = "".join(json.dumps({"content": text}) + "\n" for text in TEXTS).encode()
    hf.upload_file(path_or_fileobj=lines, path_in_repo="train.jsonl", repo_id="user/lines", repo_type="dataset")
    errors = start(ERRORS, home=tmp_path / "home", python=True)
    jsonl = start("train", *TINY, *FAST, "--dataset", "user/lines", "--text-column", "content", "--max-iterations",
                  2, "--runs-dir", tmp_path, "--run", "lines", home=tmp_path / "home_lines")
    cli = start("train", "--dataset", "user/corpus", "--text-column", "body", "--runs-dir", tmp_path,
                home=tmp_path / "home_cli")
    errors, jsonl, cli = finish(errors), finish(jsonl), finish(cli)
    assert jsonl.returncode == 0, jsonl.stderr
    record = Checkpoint.open(tmp_path / "lines" / "model_iter_2").corpus
    assert record["dataset"] == "user/lines" and record["fingerprint"] == fingerprint(TEXTS)
    messages = json.loads(errors.stdout)
    assert messages["column"].startswith("Dataset 'user/corpus' split 'train' has no column 'body' "
                                         "(columns: text, length)")
    assert messages["empty"] == ("Dataset 'user/corpus' split 'empty' is empty (no text in column 'text'); "
                                 "choose another split.")
    assert "has no split 'nope'" in messages["split"] and "train" in messages["split"]
    assert "over the cap of 0.001 MiB" in messages["cap"]
    assert messages["numbers"].startswith("Column 'length' of dataset 'user/corpus' does not hold strings")
    assert cli.returncode == 2 and cli.stderr.startswith("azr: error: Dataset 'user/corpus' split 'train' has no")
    assert cli.stderr.count("\n") == 1 and not any(tmp_path.glob("run-*"))


def test_the_app_takes_a_corpus_or_a_dataset_not_both(tmp_path):
    with pytest.raises(ConfigError, match="Give a corpus or a Hub dataset, not both"):
        AppAPI(TrainingJob(tmp_path)).train(corpus_text="some text", dataset="user/corpus", max_iterations=5)


STREAMED = """
import json, sys, tracemalloc
from azr.data.corpus import fingerprint
from azr.data.hub_datasets import HubDataset
texts = HubDataset.parse("user/big").texts()
tracemalloc.start()
digest, count = fingerprint(texts), sum(1 for _ in texts)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
whole = sum(sys.getsizeof(text) for text in texts)
print(json.dumps(dict(peak=peak, whole=whole, count=count, digest=digest, is_list=isinstance(texts, list))))
"""


def test_a_datasets_texts_are_read_a_batch_of_rows_at_a_time(hub_env, hub_server, tmp_path):
    """A dataset's column is read from its Arrow table in batches on each pass, not held as a list of strings."""
    hf = HfApi(endpoint=hub_server.url, token=hub_server.token)
    hf.create_repo("user/big", repo_type="dataset")
    texts = [f"{index}: " + "Shall I compare thee to a summer's day? 🌹 " * 50 for index in range(4000)]
    table = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), table)
    hf.upload_file(path_or_fileobj=table.getvalue(), path_in_repo="train.parquet", repo_id="user/big",
                   repo_type="dataset")
    result = finish(start(STREAMED, home=tmp_path / "home", python=True))
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout.splitlines()[-1])
    assert not read["is_list"] and read["count"] == len(texts) and read["digest"] == fingerprint(texts)
    assert read["peak"] < read["whole"] / 4, read
