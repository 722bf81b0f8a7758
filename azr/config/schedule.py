"""Learning-rate schedules as pure functions of the iteration, re-planned without jumps on extension."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

WSD_DECAY_FRACTION = 0.2  # warmup-stable-decay spends the last 20% of the run decaying
REWARM_FRACTION = 0.05  # a re-warm ramps over this share of the extension (at least one iteration)


def longest_warmup(max_iterations: int) -> int:
    """The longest warmup of a run to ``max_iterations`` unless given: half the run, so the LR decays before its end.
    A new run's default warmup keeps to it, and so does a resume to a target that its warmup would outlast."""
    return max_iterations // 2


@dataclass(frozen=True)
class LRPlan:
    """A schedule: warmup to ``peak_lr`` (fresh plans only), then cosine / constant / wsd to ``final_lr``.

    A re-planned schedule starts at ``start_iteration`` from ``start_lr`` instead of warming up, so the LR
    is continuous at the point where the plan changed. A re-warmed plan is the fresh plan of its (new) horizon,
    reached from ``ramp_lr`` by a linear ramp of ``ramp_length`` iterations starting at ``ramp_start``.
    """

    kind: str
    peak_lr: float
    final_lr: float
    warmup: int
    max_iterations: int
    start_iteration: int = 0
    start_lr: float | None = None
    ramp_start: int = 0
    ramp_length: int = 0
    ramp_lr: float = 0.0

    @classmethod
    def fresh(cls, kind: str, lr: float, min_lr_ratio: float, warmup: int, max_iterations: int) -> LRPlan:
        """Return the plan of a run that starts at iteration 0."""
        return cls(kind, lr, lr * min_lr_ratio, warmup, max_iterations)

    def lr_at(self, iteration: int) -> float:
        """Return the LR of the optimizer step taken when ``iteration`` steps are already done."""
        lr = self._base_lr(iteration)
        if self.ramp_start <= iteration < self.ramp_start + self.ramp_length:
            return self.ramp_lr + (lr - self.ramp_lr) * (iteration - self.ramp_start) / self.ramp_length
        return lr

    def _begin(self) -> tuple[int, float]:
        """Where the shape after the warmup (or after a re-plan) starts, and its LR there."""
        if self.start_lr is None:
            return self.warmup, self.peak_lr
        return self.start_iteration, self.start_lr

    def decay_start(self) -> int | None:
        """The iteration after which a wsd plan's LR decays (None for other kinds, or when nothing decays)."""
        begin, end = self._begin()[0], self.max_iterations
        start = max(begin, end - round(WSD_DECAY_FRACTION * end))
        return start if self.kind == "wsd" and start < end else None

    def _base_lr(self, iteration: int) -> float:
        if self.start_lr is None and iteration < self.warmup:
            return self.peak_lr * (iteration + 1) / self.warmup
        begin, begin_lr = self._begin()
        end = self.max_iterations
        iteration = min(max(iteration, begin), end)
        if self.kind == "constant" or end <= begin:
            return begin_lr
        if self.kind == "cosine":
            progress = (iteration - begin) / (end - begin)
            return self.final_lr + (begin_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        decay_start = self.decay_start()
        if decay_start is None or iteration < decay_start:
            return begin_lr
        progress = (iteration - decay_start) / (end - decay_start)
        return begin_lr + (self.final_lr - begin_lr) * progress

    def replanned(self, iteration: int, max_iterations: int, lr: float | None = None,
                  min_lr_ratio: float | None = None, kind: str | None = None, extend: str = "rewarm") -> LRPlan:
        """Return the plan for continuing from ``iteration`` with a possibly new target, peak LR, final-LR ratio
        or kind.

        Unchanged settings give this very plan (identical LR at every iteration). A finished, decayed run given
        a larger target re-warms with ``extend="rewarm"``: a ramp of a twentieth of the extension from the
        current LR into the fresh plan of the new horizon. Otherwise (and with ``extend="final_lr"``) the
        warmup goes on towards the new plan, or after it the LR stays continuous at ``iteration`` (a new peak
        LR is used from there) and goes from there to the final LR at the new target along the new kind. A shorter
        target that a warmup under way would not end before ends it early, at the new target's
        :func:`longest_warmup`: a ramp from the current LR reaches the peak there, or past that point the LR decays
        from where it is.
        """
        peak = self.peak_lr if lr is None else lr
        ratio = self.final_lr / self.peak_lr if min_lr_ratio is None else min_lr_ratio
        kind = kind or self.kind
        final = self.final_lr if math.isclose(peak * ratio, self.final_lr, rel_tol=1e-12) else peak * ratio
        if (peak, final, kind, max_iterations) == (self.peak_lr, self.final_lr, self.kind, self.max_iterations):
            return self
        if extend == "rewarm" and self.kind != "constant" and self.max_iterations <= iteration < max_iterations:
            ramp = max(1, round(REWARM_FRACTION * (max_iterations - iteration)))
            return LRPlan(kind, peak, final, self.warmup, max_iterations, ramp_start=iteration, ramp_length=ramp,
                          ramp_lr=self.lr_at(iteration))
        warming = self.start_lr is None and iteration < self.warmup
        limit = longest_warmup(max_iterations)
        too_long = warming and self.warmup >= max_iterations < self.max_iterations  # shortened past its warmup
        if too_long and iteration < limit:
            return LRPlan(kind, peak, final, limit, max_iterations, ramp_start=iteration, ramp_length=limit - iteration,
                          ramp_lr=self.lr_at(iteration))
        changes: dict[str, Any] = {"kind": kind, "peak_lr": peak, "final_lr": final, "max_iterations": max_iterations}
        if not warming or too_long:
            changes.update(start_iteration=iteration, start_lr=peak if peak != self.peak_lr else self.lr_at(iteration),
                           ramp_length=0)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LRPlan:
        """Rebuild a plan saved with :meth:`to_dict`."""
        return cls(**values)
