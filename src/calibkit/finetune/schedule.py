"""Schedules of the fine-tuning loop: when the EM regularizer's E-steps run, and the learning rate.

**E-steps** (only when the objective uses the EM regularizer, ``lam > 0``): at the start of
*every epoch* and, if ``em_every`` is set, after every ``em_every`` optimizer steps (not at an
epoch's last step: the next epoch starts with one). ``em_source="pass"`` re-scores the training
questions (or a fixed seeded subset of ``em_max_examples``) with the current model in eval mode;
``"running"`` re-estimates from the option probabilities of the training forwards since the
previous E-step (free, but from a model that moved during the interval and has dropout on); its
first E-step, with nothing observed yet, is a pass.

**Learning rate**: linear warm-up over ``warmup_steps``, then linear decay to 0 at the last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from calibkit.finetune.em import EMRegularizer

__all__ = ["EMSchedule", "linear_schedule"]


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier of step ``s``: ``(s+1)/(warmup+1)`` during warm-up, then a linear decay."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        span = max(1, total_steps - warmup_steps)
        return max(0.0, 1.0 - (step - warmup_steps) / span)

    return factor


class EMSchedule:
    """Runs the E-steps of an :class:`~calibkit.finetune.em.EMRegularizer` on schedule.

    Parameters
    ----------
    em : EMRegularizer
    enabled : bool
        Whether the objective uses the regularizer at all (no E-steps otherwise).
    source : {"pass", "running"}
    every : int or None
        Extra E-step every ``every`` optimizer steps.
    e_step_pass : callable
        Re-scores the training questions and calls ``em.e_step`` (leaves the model in train
        mode).
    history : list
        Where one record per E-step is appended (``step``, ``source``, ``ece`` and the bins).
    """

    def __init__(
        self,
        em: EMRegularizer,
        *,
        enabled: bool,
        source: str,
        every: int | None,
        e_step_pass: Callable[[], None],
        history: list[dict[str, Any]],
    ) -> None:
        self.em = em
        self.enabled = enabled
        self.source = source
        self.every = every
        self._pass = e_step_pass
        self.history = history

    @property
    def observes(self) -> bool:
        """Whether the training forwards must be fed to :meth:`observe`."""
        return self.enabled and self.source == "running"

    def _record(self, step: int, source: str) -> None:
        b = self.em.bins_
        assert b is not None
        self.history.append({"step": step, "source": source, "ece": b.ece, **b.to_dict()})

    def epoch_start(self, step: int) -> None:
        """The E-step that opens every epoch."""
        if not self.enabled:
            return
        if self.source == "running" and self.em.n_observed > 0:
            self.em.e_step_observed()
            self._record(step, "running")
        else:
            self._pass()
            self._record(step, "pass")

    def observe(self, probs: Any, answers: Any, ids: Sequence[int] | np.ndarray) -> None:
        """Option probabilities of a training micro-batch (``em_source="running"`` only)."""
        if self.observes:
            self.em.observe(probs, answers, ids=ids)

    def after_step(self, step: int, epoch_ends: bool) -> None:
        """The extra E-step every ``every`` optimizer steps (none when the epoch ends here)."""
        if not self.enabled or self.every is None or step % self.every or epoch_ends:
            return
        if self.source == "running":
            self.em.e_step_observed()
        else:
            self._pass()
        self._record(step, self.source)
