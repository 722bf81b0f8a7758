"""A step is atomic with respect to interrupts: whatever phase a Ctrl+C lands in, every checkpoint listed as valid
resumes to the uninterrupted run's losses and weights, and a second Ctrl+C writes nothing."""
from __future__ import annotations

import pytest
import torch
from conftest import FAST

from azr import AZRTrainer, list_checkpoints
from azr.checkpoints import storage
from azr.training import session
from azr.training.signals import ForcedExit

TARGET = 14
HIT = 8  # the interrupted step: the 8th (self-play runs on steps 3, 6, 9, 12)
SETTINGS = {**FAST, "save_every": 5}  # a periodic save at 5 and 10


@pytest.fixture(scope="module")
def uninterrupted(texts, tokenizer, model_config, tmp_path_factory):
    from azr import build_model
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    for _ in trainer.train(texts, TARGET, tmp_path_factory.mktemp("reference"), **SETTINGS):
        pass
    return list(trainer.history), {k: v.clone() for k, v in trainer.model.state_dict().items()}


class Injector:
    """Raises ``error`` the ``nth`` time ``hit()`` is called."""

    def __init__(self, nth: int, error: type[BaseException]) -> None:
        self.nth, self.error, self.calls = nth, error, 0

    def hit(self) -> None:
        self.calls += 1
        if self.calls == self.nth:
            raise self.error


def inject(phase: str, trainer: AZRTrainer, monkeypatch, error: type[BaseException]) -> None:
    """Arrange for ``error`` to be raised at ``phase`` of step HIT (or during the second periodic save)."""
    if phase == "before forward":
        injector, original = Injector(HIT, error), trainer._stepper._lm_loss

        def lm_loss(batch):
            if trainer.model.training:
                injector.hit()
            return original(batch)
        trainer._stepper._lm_loss = lm_loss
    elif phase == "after backward":
        injector, original = Injector(HIT, error), torch.nn.utils.clip_grad_norm_

        def clip(*args, **kwargs):
            result = original(*args, **kwargs)
            injector.hit()
            return result
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    elif phase in ("inside optimizer.step", "just after optimizer.step"):
        injector, make = Injector(HIT, error), session.new_optimizer

        def new_optimizer(model, config):
            optimizer = make(model, config)
            if phase == "inside optimizer.step":  # half the parameters updated, then the interrupt
                def partial(opt, args, kwargs):
                    if injector.calls == HIT - 1:
                        with torch.no_grad():
                            next(model.parameters()).add_(1e-3)
                    injector.hit()
                optimizer.register_step_pre_hook(partial)
            else:
                optimizer.register_step_post_hook(lambda opt, args, kwargs: injector.hit())
            return optimizer
        monkeypatch.setattr(session, "new_optimizer", new_optimizer)
    elif phase in SAVES:
        injector, write = Injector(3, error), storage.write_new  # the third file of the save at iteration 10

        def write_new(path, data):
            if ".tmp-model_iter_10" in str(path):
                injector.hit()
            return write(path, data)
        monkeypatch.setattr(storage, "write_new", write_new)
    else:
        raise ValueError(phase)


def interrupted_run(phase: str, error: type[BaseException], trainer: AZRTrainer, texts, directory, monkeypatch):
    """Train with ``error`` raised at ``phase``; return the checkpoints listed afterwards."""
    inject(phase, trainer, monkeypatch, error)
    # a Ctrl+C lands in the training thread: "during the save" means a save written there (a synchronous one, or the
    # files of a background save through the page cache)
    with pytest.raises(error):
        for _ in trainer.train(texts, TARGET, directory, **SETTINGS, async_save=phase != "during the save"):
            pass
    monkeypatch.undo()
    return list_checkpoints(directory)


SAVES = ("during the save", "during a background save's files")
PHASES = ("before forward", "after backward", "inside optimizer.step", "just after optimizer.step", *SAVES)


@pytest.mark.parametrize("phase", PHASES)
def test_every_valid_checkpoint_after_an_interrupt_resumes_exactly(phase, texts, tokenizer, make_model, tmp_path,
                                                                   monkeypatch, uninterrupted):
    history, weights = uninterrupted
    monkeypatch.setenv("AZR_SAVE_WRITER", "pagecache")
    infos = interrupted_run(phase, KeyboardInterrupt, AZRTrainer(make_model(), tokenizer, device="cpu"), texts,
                            tmp_path, monkeypatch)
    assert infos and all(info.valid for info in infos)
    interrupted = [i for i in infos if i.kind == "interrupted"]
    if phase in ("before forward", "after backward"):  # the update had not started: the state from before the step
        assert [i.iteration for i in interrupted] == [HIT - 1]
    elif phase in SAVES:
        assert [i.iteration for i in interrupted] == [10]  # the cut save is discarded and written again complete
    else:  # cut mid-update: no consistent state exists, so nothing is written
        assert interrupted == []
    for info in infos:
        resumed = AZRTrainer(make_model(seed=9), tokenizer, device="cpu")
        for _ in resumed.train(texts, TARGET, tmp_path, resume_from=info.path, **SETTINGS):
            pass
        assert [r["loss"] for r in resumed.history] == [r["loss"] for r in history], info.name
        assert [r["reward"] for r in resumed.history] == [r["reward"] for r in history], info.name
        for name, value in weights.items():
            assert torch.equal(resumed.model.state_dict()[name], value), (info.name, name)


@pytest.mark.parametrize("phase", ["after backward", *SAVES])
def test_a_second_ctrl_c_exits_at_once_and_writes_nothing(phase, texts, tokenizer, make_model, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("AZR_SAVE_WRITER", "pagecache")
    infos = interrupted_run(phase, ForcedExit, AZRTrainer(make_model(), tokenizer, device="cpu"), texts, tmp_path,
                            monkeypatch)
    assert [i.name for i in infos] == ["model_iter_5"] and infos[0].valid
