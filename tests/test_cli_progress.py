"""``azr train``'s progress under a terminal that reports no size (``script``, some CI consoles): a pseudo-terminal
made with ``pty.openpty()`` and never given a size."""
from __future__ import annotations

import math
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from azr import default_corpus

TINY = ["--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--d-ff", "64", "--max-seq-len", "32",
        "--vocab-size", "300"]
TARGET = 300
TIMEOUT_S = 240


def read_with_times(command: list[str]) -> list[tuple[float, str]]:
    """Run ``command`` with a sizeless pseudo-terminal as its terminal; return its output chunks with the seconds
    since the start at which each arrived."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    master, child = pty.openpty()
    process = subprocess.Popen(command, stdin=child, stdout=child, stderr=child, env={**env, "OMP_NUM_THREADS": "1"})
    os.close(child)
    start, chunks = time.monotonic(), []
    try:
        while time.monotonic() - start < TIMEOUT_S:
            if select.select([master], [], [], 1)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic() - start, data.decode(errors="replace")))
            elif process.poll() is not None:
                break
    finally:
        process.kill()
        process.wait()
        os.close(master)
    assert process.returncode == 0, "".join(text for _, text in chunks)
    return chunks


def test_progress_shows_at_once_and_moves_between_statuses_under_a_terminal_without_a_size(tmp_path: Path):
    corpus = tmp_path / "small.txt"
    corpus.write_text(default_corpus()[0][:60_000], encoding="utf-8")
    chunks = read_with_times(["azr", "train", *TINY, "--batch-size", "4", "--self-play-every", "0", "--save-every",
                              "1000", "--status-every", "1000", "--texts", str(corpus), "--runs-dir", str(tmp_path),
                              "--run", "run", "--max-iterations", str(TARGET)])  # no status between start and end

    output = "".join(text for _, text in chunks)

    def first(pattern: str) -> float:
        return next((t for t, text in chunks if re.search(pattern, text)), math.inf)

    started, completed = first("Started; training to"), first("Completed")
    shown = first(rf"\d+/{TARGET}")
    assert shown - started < 10 and shown <= completed < math.inf, output
    counts = {int(n) for _, text in chunks for n in re.findall(rf"(\d+)/{TARGET}\b", text)}
    assert len(counts - {0, TARGET}) >= 2, counts  # the bar moved between the statuses at 0 and at the end
