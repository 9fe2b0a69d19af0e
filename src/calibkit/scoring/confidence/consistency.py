"""Self-consistency (Wang et al. 2023; Lyu et al. 2024): the answer distribution over n samples.

Text only. Each item's answer prompt is sampled ``n`` times at temperature ``T > 0``
(:func:`calibkit.scoring.sampling.sample_cached`: every sample cached on its own, so a killed run
resumes exactly). Each sample is parsed to a class; the vote share over the K classes is the
per-class distribution of the ``Scores`` (a class with no vote gets probability 0, stored as
``log(1e-12)``); ``per_item["vote_entropy"]`` is its entropy in nats. Samples naming no class are
left out of the vote (counted in ``per_item["n_unparsed_samples"]``); an item with no vote at all,
or with a failed sample, is an item failure. The predicted class is the most voted one (ties go
to the first class in column order).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calibkit.scores import Scores
from calibkit.scoring.backends.base import Generation, ItemFailure
from calibkit.scoring.classify import ItemsFailed, open_cache
from calibkit.scoring.confidence.base import EstimatorBase, OnError, cost_of, to_scores
from calibkit.scoring.sampling import SamplingParams, sample_cached, sample_keys

__all__ = ["ConsistencyConfidence"]


class ConsistencyConfidence(EstimatorBase):
    """Vote share over ``n`` samples -> per-class :class:`~calibkit.Scores`.

    Parameters (besides those of :class:`~calibkit.scoring.confidence.base.EstimatorBase`)
    ----------
    n : int
        Samples per item (>= 2).
    temperature, top_p : float
        Sampling settings (``temperature > 0``).
    seed : int
        Sample ``j`` uses seed ``seed + j``.
    max_new_tokens : int
        Tokens per sample.
    """

    name = "consistency"

    def __init__(
        self,
        backend: Any,
        classes: Sequence[str],
        template: Any = None,
        *,
        n: int = 5,
        temperature: float = 0.7,
        top_p: float = 1.0,
        seed: int = 0,
        max_new_tokens: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(backend, classes, template, **kwargs)
        if not callable(getattr(backend, "sample", None)):
            raise ValueError(f"backend {backend.name} cannot sample (it has no sample method)")
        self.params = SamplingParams(temperature=temperature, top_p=top_p, seed=seed, n=n)
        if n < 2:
            raise ValueError(f"n must be >= 2 for a vote, got {n}")
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (at 0 every sample agrees), got {temperature}"
            )
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
        *,
        on_error: OnError = "fail",
    ) -> Scores:
        """Per-class Scores of ``n`` texts: vote shares over the samples.

        ``meta``: ``estimator``, ``sampling`` (T, top_p, seed, n), ``cost``; ``per_item``:
        ``answer_index`` (most voted class), ``votes`` (K counts), ``vote_entropy`` (nats),
        ``n_unparsed_samples``. Failures as in
        :meth:`~calibkit.scoring.classify.ClassificationScorer.score` (``on_error``).
        """
        if on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        texts = self.check_texts(texts)
        prompts = [self.prompt(t) for t in texts]
        samples, cached_items = self._draw(prompts)
        ok, votes, unparsed, costs, failures = self._tally(samples, prompts)
        #: item counts of the last run (an item is cached when all its samples were; a failed
        #: item counts as failed only)
        n_cached = len(cached_items.intersection(ok))
        self.last_run = {
            "n_items": len(texts),
            "n_cached": n_cached,
            "n_new": len(ok) - n_cached,
            "n_failed": len(failures),
        }
        if failures and (on_error == "fail" or not ok):
            f = failures[0]
            raise ItemsFailed(
                f"{len(failures)} of {len(texts)} items could not be scored; first: item "
                f"{f['row']}: {f['reason']}",
                failures,
                len(texts),
                0,
            )
        vm = np.asarray(votes, dtype=np.float64)
        share = vm / vm.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.sum(np.where(share > 0, share * np.log(share), 0.0), axis=1)
        m = max(len(ok), 1)
        tot = {key: int(sum(c[key] for c in costs)) for key in costs[0]} if costs else {}
        meta = {
            "task": "classify",
            "estimator": self.name,
            "model": self.backend.name,
            "sampling": json.loads(self.params.fingerprint(0)) | {"n": self.params.n},
            "cost": {**tot, "per_item": {key: v / m for key, v in tot.items()}},
            "n_unparsed_samples": int(sum(unparsed)),
            "failures": failures,
        }
        return to_scores(
            probs=share,
            classes=self.classes,
            answer_index=[int(np.argmax(v)) for v in votes],
            labels=labels,
            task_classes=self.classes,
            ok=ok,
            n=len(texts),
            ids=ids,
            meta=meta,
            per_item={
                "votes": vm.astype(np.int64).tolist(),
                "vote_entropy": ent,
                "n_unparsed_samples": np.asarray(unparsed, dtype=np.int64),
            },
        )

    def _draw(self, prompts: list[Any]) -> tuple[list[list[Generation | ItemFailure]], set[int]]:
        """The ``n`` samples of each prompt (cached one by one) and the items fully cached."""
        stats: dict[str, int] = {}
        with ExitStack() as stack:
            cache = open_cache(self.cache, stack)
            cached_items: set[int] = set()
            if cache is not None:
                items, skeys = sample_keys(
                    self.backend.name, prompts, self.params, self.max_new_tokens
                )
                have = cache.get_many(skeys)
                missing = {i for (i, _), k in zip(items, skeys, strict=True) if k not in have}
                cached_items = set(range(len(prompts))) - missing
            try:
                samples = sample_cached(
                    self.backend,
                    prompts,
                    self.params,
                    max_new_tokens=self.max_new_tokens,
                    cache=cache,
                    batch_size=self.batch_size,
                    progress=self.progress,
                    stats=stats,
                )
            except KeyboardInterrupt:
                done = stats.get("n_cached", 0) + stats.get("n_new", 0)
                raise KeyboardInterrupt(
                    f"{done} of {stats.get('n_items', 0)} samples cached; rerun to resume"
                ) from None
        return samples, cached_items

    def _tally(
        self, samples: list[list[Generation | ItemFailure]], prompts: list[Any]
    ) -> tuple[list[int], list[np.ndarray], list[int], list[dict[str, int]], list[dict[str, Any]]]:
        """``(ok rows, votes (K,) each, unparsed counts, costs, failures)`` of the samples."""
        k = len(self.classes)
        ok: list[int] = []
        votes: list[np.ndarray] = []
        unparsed: list[int] = []
        costs: list[dict[str, int]] = []
        failures: list[dict[str, Any]] = []
        for i, row in enumerate(samples):
            bad = next((g for g in row if isinstance(g, ItemFailure)), None)
            if bad is not None:
                failures.append({"row": i, "id": str(i), "reason": f"a sample failed: {bad}"})
                continue
            gens = [g for g in row if isinstance(g, Generation)]
            v = np.zeros(k, dtype=np.int64)
            nu = 0
            for g in gens:
                c = self.parse(g.text)
                if c >= 0:
                    v[c] += 1
                else:
                    nu += 1
            if v.sum() == 0:
                failures.append(
                    {
                        "row": i,
                        "id": str(i),
                        "reason": f"none of the {len(gens)} samples named a class "
                        f"(first: {gens[0].text[:60]!r})",
                    }
                )
                continue
            ok.append(i)
            votes.append(v)
            unparsed.append(nu)
            costs.append(cost_of([prompts[i]] * len(gens), gens))
        return ok, votes, unparsed, costs, failures
