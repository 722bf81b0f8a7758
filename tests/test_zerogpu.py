"""On a ZeroGPU Space the app's job trains in time-budget slices, each passing through the real ``spaces.GPU`` with
the slice's duration. The ``spaces`` package is imported here before the ZeroGPU variable is set, so its decorator
runs the function as it is (as it does everywhere but on ZeroGPU hardware); the test wraps it to watch the calls."""
from __future__ import annotations

import math
import time

import pytest
import spaces
from app_process import SMALL_MODEL, small_corpus
from conftest import FAST

from azr import ModelConfig
from azr.app import zerogpu
from azr.app.jobs import TrainingJob
from azr.training.step import Stepper

SLICE_S = 1.5


@pytest.fixture
def gpu_calls(monkeypatch):
    """Pretend to be on a ZeroGPU Space; record each ``spaces.GPU`` duration and each run of a decorated function."""
    monkeypatch.setenv(zerogpu.ZERO_GPU_ENV, "true")
    monkeypatch.setenv(zerogpu.SLICE_ENV, str(SLICE_S))
    calls, real = [], spaces.GPU

    def watched(*args, duration=None, **kwargs):
        decorate = real(*args, duration=duration, **kwargs)

        def wrap(task):
            decorated = decorate(task)

            def run():
                calls.append({"duration": duration, "statuses": []})
                for status in decorated():
                    calls[-1]["statuses"].append((status.state, status.iteration))
                    yield status
            return run
        return wrap
    monkeypatch.setattr(spaces, "GPU", watched)
    return calls


def test_each_time_budget_slice_runs_inside_spaces_gpu_with_its_duration(gpu_calls, tmp_path):
    job = TrainingJob(tmp_path, hub_repo="")
    job.start([small_corpus()], ModelConfig(**SMALL_MODEL), 100_000, time_budget_s=2 * SLICE_S + 0.5, **FAST)
    assert job.wait(300)
    status = job.status()
    assert len(gpu_calls) == 3, gpu_calls  # 1.5 s, 1.5 s and the 0.5 s left of the job's budget
    assert [call["duration"] for call in gpu_calls[:2]] == [math.ceil(SLICE_S + zerogpu.GRACE_S)] * 2
    assert gpu_calls[2]["duration"] == math.ceil(0.5 + zerogpu.GRACE_S)
    for call in gpu_calls[:2]:  # each slice trained, paused, and the next one resumed there
        assert call["statuses"][-1][0] == "paused" and call["statuses"][-1][1] > call["statuses"][0][1]
    assert status["state"] == "paused" and gpu_calls[2]["statuses"][-1] == ("paused", status["iteration"])
    assert [r["iteration"] for r in status["history"]] == list(range(1, status["iteration"] + 1))


def test_without_a_budget_the_slices_go_on_to_the_end_and_stop_ends_them(gpu_calls, tmp_path, monkeypatch):
    short = 0.3  # slices far shorter than the 16 iterations take: each takes at least 50 ms, however fast the machine
    monkeypatch.setenv(zerogpu.SLICE_ENV, str(short))
    step = Stepper.step
    monkeypatch.setattr(Stepper, "step", lambda self, run, snapshot: (time.sleep(0.05), step(self, run, snapshot))[1])
    job = TrainingJob(tmp_path, hub_repo="")
    job.start([small_corpus()], ModelConfig(**SMALL_MODEL), 16, **FAST)
    assert job.wait(300)
    status = job.status()
    assert (status["state"], status["iteration"]) == ("completed", 16)
    assert len(gpu_calls) >= 2 and all(c["duration"] == math.ceil(short + zerogpu.GRACE_S) for c in gpu_calls)
    assert [r["iteration"] for r in status["history"]] == list(range(1, 17))

    job.resume(status["checkpoint"], 100_000)
    job.stop()
    assert job.wait(120)
    stopped = job.status()
    assert stopped["state"] == "paused" and stopped["checkpoint"].endswith(f"model_paused_{stopped['iteration']}")
    assert gpu_calls[-1]["statuses"][-1][0] == "paused"
