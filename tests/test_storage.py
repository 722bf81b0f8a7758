"""File modes: every file of a run gets the mode a new file of the process gets (0o666 less the umask), whoever
writes it (our own writes, ``save_pretrained`` and the safetensors library, a background thread or the writer
process)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
UMASK, MODE = 0o007, 0o660
TRAIN = textwrap.dedent(f"""
    import os, sys
    os.umask({UMASK:#o})
    from conftest import FAST
    from azr import AZRTrainer, ModelConfig, build_model
    from azr.data.corpus import default_corpus
    from azr.data.tokenizer import train_tokenizer
    texts = [default_corpus()[0][:20000]]
    tokenizer = train_tokenizer(texts, 300)
    model = build_model(ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=2, d_ff=64,
                                    max_seq_len=32), seed=0)
    trainer = AZRTrainer(model, tokenizer, device="cpu")
    for _ in trainer.train(texts, 4, sys.argv[1], **{{**FAST, "save_every": 2, "val_every": 2, "keep_best": True}}):
        pass
""")


@pytest.mark.parametrize("writer", ["thread", "process", "pagecache"])
def test_every_file_of_a_run_gets_the_mode_the_umask_gives(writer, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "AZR_SAVE_WRITER": writer, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    subprocess.run([sys.executable, "-c", TRAIN, str(run)], check=True, env=env)  # its own umask, its own writer
    files = [p for p in run.rglob("*") if p.is_file()]
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in files}
    assert {p.suffix or p.name for p in files} >= {".safetensors", ".json", ".jsonl", ".lock"}, modes
    assert set(modes.values()) == {oct(MODE)}, modes
