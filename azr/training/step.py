"""One optimizer step of a run: the LM loss over this process's share of a global batch, the self-play round of
every ``self_play_every``-th iteration blended in, the non-finite guard, the update and its bookkeeping."""
from __future__ import annotations

import contextlib
import time

import torch

from azr.rl.grpo import blend_rl_gradient, group_advantages, grpo_loss
from azr.rl.selfplay import self_play_round
from azr.training import distributed, precision
from azr.training.guard import check_step, grad_norm
from azr.training.losses import next_token_loss
from azr.training.saving import StepSnapshot
from azr.training.session import Run


class Stepper:
    """Takes the optimizer steps of a model's runs; ``forward`` is what the training forward passes call (the
    model, DDP-wrapped and compiled when asked)."""

    def __init__(self, model, tokenizer, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.forward = model

    def step(self, run: Run, snapshot: StepSnapshot) -> None:
        """One optimizer step on one global batch (this process's share of it, in ``grad_accum_steps``
        micro-batches), with self-play on every ``self_play_every``-th iteration."""
        state, config = run.state, run.config
        snapshot.begin(state, self.device)  # until the update starts, a save stores the state from before
        lr = state.plan.lr_at(state.iteration)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batch = run.windows.draw(state.sampler, config.batch_size, config.sampling)  # the global batch
        self.model.train()
        play = None
        if config.self_play_every and (state.iteration + 1) % config.self_play_every == 0:
            with self.autocast(config):  # every process plays the same round: see docs/hardware.md
                play = self_play_round(self.model, self.tokenizer, run.windows.train, run.rewards, config,
                                       state.iteration)
        run.optimizer.zero_grad(set_to_none=True)
        lm_loss = self._backward(run, distributed.micro_batches(batch, config.grad_accum_steps))
        if state.scaler:  # the RL gradient is blended in unscaled, after the LM gradients are unscaled
            state.scaler.unscale_(run.optimizer)
        # A GradScaler skips a step whose LM gradients overflowed by itself; what it did not see (the RL gradient
        # blended in after) is guarded here like any gradient.
        guard_norm = not state.scaler or (play is not None and self._finite_gradients())
        kl = self._reinforce(run, play) if play is not None else None
        norm = grad_norm(self.model.parameters(), config.grad_clip)
        check_step(lm_loss, norm if guard_norm else None, state.iteration + 1, config, lr)
        snapshot.updating()  # from here until the bookkeeping is done, no consistent checkpoint exists
        if state.scaler:
            state.scaler.step(run.optimizer)
            state.scaler.update()
        else:
            run.optimizer.step()
        self._record(run, lm_loss, lr, play, kl)
        snapshot.end()

    def _backward(self, run: Run, pieces: list[torch.Tensor]) -> torch.Tensor:
        """Accumulate the LM gradients of this process's micro-batches; return their mean loss (detached)."""
        total = torch.zeros((), device=self.device)
        scaler = run.state.scaler
        for number, piece in enumerate(pieces):
            with self._synced(number == len(pieces) - 1), self.autocast(run.config):
                lm_loss = self._lm_loss(piece.to(self.device))
                loss = lm_loss / len(pieces)
            (scaler.scale(loss) if scaler else loss).backward()
            total += lm_loss.detach()
        return total / len(pieces)

    def _finite_gradients(self) -> bool:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))

    def _record(self, run: Run, lm_loss: torch.Tensor, lr: float, play, kl: float | None) -> None:
        """The step's bookkeeping: iteration, metrics and history."""
        state = run.state
        state.iteration += 1
        state.loss = distributed.mean(lm_loss)
        reward = float(play.rewards.mean()) if play else None
        if play:
            state.reward, state.reward_components, state.samples = reward, play.by_function, play.samples
            state.reward_std, state.kl = float(play.rewards.std()), kl
        state.history.append({"iteration": state.iteration, "loss": state.loss, "reward": reward, "lr": lr,
                              "time": time.time()})

    def _reinforce(self, run: Run, play) -> float | None:
        """Blend the GRPO gradient of a self-play round into the LM gradients; return the mean KL to the reference.

        Every process plays the same round with the same weights, so the RL gradient needs no averaging.
        """
        state, config = run.state, run.config
        if config.beta and state.reference.due(state.iteration, config.ref_sync_every):
            state.reference.refresh(self.model, state.iteration)
        with self.autocast(config):
            advantages = group_advantages(play.rewards, config.num_generations, config.scale_rewards)
            rl_loss, kl = grpo_loss(self.model, play.rollout, advantages, config.beta, state.reference,
                                    config.loss_type)
        blend_rl_gradient(self.model, rl_loss, config.rl_weight, config.rl_norm_rescale)
        return kl

    def _lm_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the mean next-token cross-entropy over the tokens of ``batch``."""
        return next_token_loss(self.forward, batch)

    def autocast(self, config):
        """The autocast context of the run's precision (nothing for fp32)."""
        return precision.autocast(config.precision, self.device)

    def _synced(self, last: bool):
        """Inside a process group, gradients are averaged only on the last micro-batch of a step."""
        ddp = getattr(self.forward, "_orig_mod", self.forward)  # the DDP module under torch.compile
        return contextlib.nullcontext() if last or not hasattr(ddp, "no_sync") else ddp.no_sync()
