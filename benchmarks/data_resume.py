"""Resuming a run over a large corpus: ``azr resume`` from process start to its first new step, against the same
over a small corpus.

Each run is set up once in a child process (``python -m benchmarks.data_resume setup ...``: the bench tokenizer, the
tiny model, one iteration, its checkpoint), over the corpus as the user gives it: a list of files. The small corpus
is generated as for the data group; the large one is the small one's files, copied over and over (texts and files
alike, so its token file is the small one's ids repeated, written into the run before the setup starts: the setup
then does not spend minutes tokenising what the resume is not to tokenise again). The timed command is the user's,
``python -m azr resume RUN/model_iter_1 --max-iterations 2`` in a new process; the first step's end is read from the
history of the checkpoint it saves.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from azr import AZRTrainer, ModelConfig, TextFiles, build_model, load_texts
from azr.checkpoints.checkpoint import Checkpoint
from azr.data.corpus import fingerprint
from azr.data.tokens import TOKENS_DIR, TokenFile, encode

from .common import TOKENIZER_DIR, Bench, Entry, alternate, progress
from .data import write_corpus
from .processes import REPO, run_python

SETTINGS = {"batch_size": 4, "seq_len": 64, "save_every": 1000, "self_play_every": 10, "val_every": 1000}


def run(bench: Bench, sizes_mb: tuple[float, ...], base_mb: float) -> list[Entry]:
    """Alternate resuming a run over ``base_mb`` of text with runs over each of ``sizes_mb``; one entry per size."""
    source = write_corpus(bench.directory("resume-corpus"), base_mb)
    runs = {megabytes: _set_up(bench, source, megabytes / base_mb) for megabytes in sorted({base_mb, *sizes_mb})}
    phases: dict[str, list[float]] = {}

    def resume(megabytes: float) -> float:
        seconds = resume_to_first_step(runs[megabytes])
        phases.setdefault(f"{megabytes:g}MB", []).append(seconds)
        return seconds

    progress(f"data: `azr resume` to the first new step over {', '.join(f'{mb:g}' for mb in runs)} MB of text")
    names = {megabytes: f"resume_{megabytes:g}MB" for megabytes in runs}
    samples = alternate({names[mb]: (lambda mb=mb: resume(mb)) for mb in runs}, bench.sizes.data_repeats,
                        warmup=bench.sizes.process_warmup)
    entries = [bench.entry(f"data_resume_s@{mb:g}MB", samples, "s", names[mb], names[base_mb], goal=("<=", 1.2),
                           corpus_mb=mb, base_mb=base_mb, command="python -m azr resume RUN/model_iter_1 "
                           "--max-iterations 2", measured="process start to the end of the first new step")
               for mb in runs if mb != base_mb]
    for directory in {path.parent for run_dir in runs.values() for path in _files(run_dir)}:
        shutil.rmtree(directory, ignore_errors=True)
    return entries


def _set_up(bench: Bench, source: list[Path], copies: float) -> Path:
    """A run over ``copies`` times the ``source`` files (rounded to whole files), trained for one iteration."""
    count = max(1, round(copies * len(source)))
    corpus = bench.directory("resume-files")
    files = [corpus / f"{index:06d}{source[index % len(source)].suffix}" for index in range(count)]
    for index, path in enumerate(files):
        shutil.copyfile(source[index % len(source)], path)
    run_dir = bench.directory("resume-run")
    (run_dir / "files.json").write_text(json.dumps([str(path) for path in files]))
    run_python("-m", "benchmarks.data_resume", "setup", str(bench.scratch / TOKENIZER_DIR), str(run_dir),
               json.dumps(bench.model_config.to_dict()), *map(str, source))
    return run_dir


def _files(run_dir: Path) -> list[Path]:
    return [Path(path) for path in json.loads((run_dir / "files.json").read_text())]


def resume_to_first_step(run_dir: Path) -> float:
    """Seconds from starting ``azr resume`` of the run's first checkpoint to the end of its first new step."""
    shutil.rmtree(run_dir / "model_iter_2", ignore_errors=True)
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "azr", "resume", str(run_dir / "model_iter_1"), "--max-iterations",
                           "2"], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"azr resume failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return Checkpoint.open(run_dir / "model_iter_2", verify=False).history()[-1]["time"] - started


# ---------------------------------------------------------------------------- the child process


def _setup(args: argparse.Namespace) -> None:
    """Train the run's first iteration over its files, its token file written first from the source's ids."""
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    files = _files(args.run_dir)
    texts = TextFiles(files)
    cycles, rest = divmod(len(files), len(args.source))
    ids = [encode(load_texts(args.source), tokenizer)] * cycles
    repeated = np.concatenate(ids + ([encode(load_texts(args.source[:rest]), tokenizer)] if rest else []))
    TokenFile.of(args.run_dir / TOKENS_DIR, fingerprint(texts), tokenizer).write(repeated)
    model = build_model(ModelConfig.from_dict(json.loads(args.model)), seed=0)
    for _ in AZRTrainer(model, tokenizer, device="cpu").train(texts, 1, args.run_dir, **SETTINGS):
        pass


def main(argv: list[str] | None = None) -> None:
    """Set up one run (``setup``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_resume")
    parser.add_argument("command", choices=("setup",))
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("model", help="the ModelConfig as JSON")
    parser.add_argument("source", type=Path, nargs="+", help="the small corpus' files")
    _setup(parser.parse_args(argv))
    print(json.dumps({}))


if __name__ == "__main__":
    main()
