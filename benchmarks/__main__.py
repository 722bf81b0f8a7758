"""``python -m benchmarks [--quick] [--output PATH] [--device auto] [--precision fp32] [--threads N] [--repeats N]
[--only GROUP …]``: run every comparison (or those of the named groups), write the results JSON and print the table
(progress goes to stderr)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

if importlib.util.find_spec("accelerate") is None:  # transformers.Trainer, a baseline, needs it: check before importing
    print("python -m benchmarks needs the bench extra: pip install -e '.[bench]' (in the README's .venv: "
          ".venv/bin/pip install -e '.[bench]').", file=sys.stderr)
    sys.exit(2)

import torch  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from azr.config import PRECISIONS  # noqa: E402
from azr.training.precision import check  # noqa: E402
from azr.training.trainer import resolve_device  # noqa: E402

from . import METRICS, async_saves, checkpoints, cli, data, generation, history, processes, training  # noqa: E402
from .common import DEFAULT, QUICK, Bench, Entry, progress, steady_allocator  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"
UNIT_FORMATS = {"% of peak": "{:.2f}",
                "tokens/s": "{:,.0f}", "s": "{:.3f}", "s/iteration": "{:.4f}", "MB": "{:.1f}", "KB": "{:.1f}"}


GROUPS = ("checkpoints", "history", "training", "generation", "processes", "cli", "async_saves", "data", "dcp_saves",
          "135m", "135m_training", "135m_checkpoints", "135m_memory")
# Groups that run only when named with --only: dcp_saves starts a one-process torch.distributed group (DCP's process
# executor needs one) and weighs PyTorch DCP against the project's writer, a question, not a product metric; 135m
# trains and checkpoints a 135 M model, about 15 minutes on one CPU thread (135m_training, _checkpoints, _memory:
# its parts).
ONLY_WHEN_NAMED = ("dcp_saves", "135m", "135m_training", "135m_checkpoints", "135m_memory")


def run_all(bench: Bench, only: list[str] | None = None, data_mb: tuple[float, ...] | None = None,
            resume_mb: tuple[float, ...] | None = None) -> list[Entry]:
    """Run every benchmark group (or those in ``only``); return the entries in the order of METRICS.
    ``data_mb``, ``resume_mb``: the corpus sizes the data group tokenises and resumes over (default: the sizes')."""

    @functools.cache
    def made() -> tuple[Path, checkpoints.Subject]:  # the realistic checkpoint, made once for the groups that read it
        trainer, checkpoint = checkpoints.realistic_checkpoint(bench)
        return checkpoint, checkpoints.subject(bench, trainer.model, checkpoint)

    groups = {"checkpoints": lambda: checkpoints.run(bench, made()[1]),
              "history": lambda: history.run(bench, made()[1]),
              "training": lambda: training.run(bench), "generation": lambda: generation.run(bench),
              "processes": lambda: processes.run(bench, made()[0]), "cli": lambda: cli.run(bench, made()[0]),
              "async_saves": lambda: async_saves.run(bench, made()[1]),
              "data": lambda: _data(bench, data_mb, resume_mb),
              "dcp_saves": lambda: _dcp_saves(bench, made()[1]), "135m": lambda: _preset_135m(bench),
              "135m_training": lambda: _preset_135m(bench, "run_training"),
              "135m_checkpoints": lambda: _preset_135m(bench, "run_checkpoints"),
              "135m_memory": lambda: _preset_135m(bench, "run_memory")}
    chosen = [name for name in GROUPS if name in only] if only else [n for n in GROUPS if n not in ONLY_WHEN_NAMED]
    entries = [entry for name in chosen for entry in groups[name]()]
    order = list(METRICS)
    return sorted(entries, key=lambda entry: order.index(entry.name.split("@")[0]))


def _data(bench: Bench, data_mb: tuple[float, ...] | None, resume_mb: tuple[float, ...] | None) -> list[Entry]:
    """The data group: tokenising corpora of ``data_mb``, then resuming runs over ``resume_mb`` (default: those
    sizes) against one over a small corpus."""
    from . import data_resume  # noqa: PLC0415

    base = bench.sizes.resume_base_mb
    resumed = tuple(mb for mb in resume_mb or data_mb or bench.sizes.resume_mb if mb != base)
    return data.run(bench, data_mb or bench.sizes.data_mb) + (data_resume.run(bench, resumed, base) if resumed
                                                              else [])


def _dcp_saves(bench: Bench, subject: checkpoints.Subject) -> list[Entry]:
    from . import dcp_saves  # noqa: PLC0415 (torch.distributed.checkpoint: only for the group that needs it)

    return dcp_saves.run(bench, subject)


def _preset_135m(bench: Bench, part: str = "run") -> list[Entry]:
    from . import preset_135m  # noqa: PLC0415 (a group that runs only when named)

    return getattr(preset_135m, part)(bench)


def table(entries: list[Entry]) -> str:
    """Return the results as a Markdown table."""
    lines = ["| metric | value | compared with | baseline | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        number = UNIT_FORMATS.get(e.unit, "{:.4g}")
        baseline = number.format(e.baseline) if e.baseline is not None else ""
        ratio = f"{e.ratio:.3f}" if e.ratio is not None else ""
        met = "" if e.met is None else ("met" if e.met else "**missed**")
        lines.append(f"| {e.name} | {number.format(e.value)} {e.unit} | {e.compared_with or ''} | {baseline} | "
                     f"{ratio} | {e.goal or ''} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmarks in a scratch directory, write the JSON and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes), for the smoke test")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"results JSON (default {DEFAULT_OUTPUT})")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="precision of the training comparisons (tokens/s, MFU), the same for AZRTrainer and the "
                             "bare loop (default fp32)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine, OpenMP threads waiting on each other "
                             "make step times swing tenfold, and ratios with them)")
    parser.add_argument("--repeats", type=int, help="timed rounds of every in-process comparison (default: the sizes', "
                        "5); the warm-up round comes on top")
    parser.add_argument("--workdir", type=Path, help="where checkpoints are written (default: the temp directory)")
    parser.add_argument("--only", nargs="+", choices=GROUPS,
                        help=f"run only these groups (default: all but {', '.join(ONLY_WHEN_NAMED)}, which run only "
                             "when named)")
    parser.add_argument("--data-mb", nargs="+", type=float,
                        help="corpus sizes in MB the data group tokenises (default 10 50; --quick 0.25), e.g. 100 500")
    parser.add_argument("--resume-mb", nargs="+", type=float,
                        help="corpus sizes in MB of the runs the data group resumes, each against a run over 10 MB "
                             "(default: the --data-mb sizes, else 50; --quick none), e.g. 500")
    parser.add_argument("--data-repeats", type=int, help="rounds of each data comparison (default 3; --quick 1)")
    args = parser.parse_args(argv)
    allocator = steady_allocator()
    torch.set_num_threads(args.threads)
    transformers_logging.disable_progress_bar()  # a bar per checkpoint save would drown the progress lines
    transformers_logging.set_verbosity_error()
    device = resolve_device(args.device)
    check(args.precision, device)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="azr-bench-", dir=args.workdir) as scratch:
        sizes = QUICK if args.quick else DEFAULT
        if args.repeats is not None:
            sizes = dataclasses.replace(sizes, repeats=args.repeats)
        if args.data_repeats is not None:
            sizes = dataclasses.replace(sizes, data_repeats=args.data_repeats)
        bench = Bench(sizes, device, args.threads, Path(scratch), allocator, args.precision)
        entries = run_all(bench, args.only, tuple(args.data_mb or ()), tuple(args.resume_mb or ()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([entry.as_dict() for entry in entries], indent=1) + "\n")
    progress(f"{'quick' if args.quick else 'default'} run took {time.monotonic() - started:.0f} s; "
             f"wrote {args.output}")
    print(table(entries))
    machine = bench.machine
    print(f"\n{args.output.name} ({bench.sizes.name} sizes): {machine['cpu']} ({machine['cores']} cores), "
          f"device {machine.get('gpu', machine['device'])}, torch {machine['torch']} with {machine['torch_threads']} "
          f"thread(s), transformers {machine['transformers']}, Python {machine['python']}; allocator: "
          f"{machine['allocator']}; load average at start {machine['load_average_at_start']}")


if __name__ == "__main__":
    main()
