"""Step 2 of paper 000: LLM-generated texts for the target bins, then an LLM relabel filter.

Stage 1 (:class:`SyntheticGenerator`): for every item ``x_i`` of a target bin, the LLM gets the
appendix C task description and the appendix A prompt (:mod:`calibkit.synthetic.prompts`) and
writes ``n_utterances`` (3) short texts; :func:`parse_utterances` splits its answer into
utterances. Stage 2 (:func:`relabel`): the same LLM classifies every generated text
(:class:`~calibkit.scoring.ClassificationScorer`, appendix C prompt) and only texts it assigns to
``x_i``'s class are kept; they carry ``x_i``'s label into training (the requested probability is
dropped, as in the note under Table 8).

Any scoring-layer backend generates (:class:`~calibkit.scoring.TransformersBackend` with the
bundled SmolLM2 here, a larger local model or
:class:`~calibkit.scoring.backends.openai_http.OpenAICompatibleBackend` for users). The backend
protocol decodes greedily; the paper samples at ``T = 0.1``, which is close to greedy. Diversity
comes from the per-item prompts (each target text is its own prompt) and from asking for 3
utterances at once.

Raw generations are stored in a :class:`~calibkit.scoring.ScoreCache` keyed by backend, prompt and
decoding length, so an interrupted run resumes where it stopped and a re-run with another
``max_targets`` or seed only generates what is new. Parsing happens after the cache, so a better
parser never needs a re-generation.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from calibkit.scoring.backends.base import ItemFailure
from calibkit.synthetic.gaps import GapReport
from calibkit.synthetic.prompts import (
    COMPLETION_CUE,
    generation_completion,
    generation_messages,
    relabel_template,
    revised_confidence,
    to_percent,
)
from calibkit.tasks import TaskSpec

if TYPE_CHECKING:
    from calibkit.scoring.backends.base import Backend, Prompt
    from calibkit.scoring.cache import ScoreCache

__all__ = [
    "GenerationRequest",
    "SyntheticGenerator",
    "SyntheticText",
    "generate_synthetic",
    "is_degenerate",
    "is_meta",
    "near_duplicate",
    "parse_utterances",
    "relabel",
    "requests_from_gaps",
    "usable_utterances",
]

_KEY_VERSION = "synthetic-gen-v1"


@dataclass(frozen=True)
class GenerationRequest:
    """One target item ``x_i`` to imitate.

    Attributes
    ----------
    text : str
        ``x_i``.
    label : int
        Gold class of ``x_i``; the generated texts must keep it.
    confidence : float
        Mean predicted probability of class 1 in ``x_i``'s bin (a probability).
    gap : float
        ``Conf(B_m) - Acc(B_m)`` of the bin.
    scenario : str
        Table 1 cell of the bin.
    source : int
        Position of ``x_i`` in the validation split (-1 if unknown).
    bin : int
        Bin index (-1 if unknown).
    """

    text: str
    label: int
    confidence: float
    gap: float
    scenario: str
    source: int = -1
    bin: int = -1

    @property
    def target_percent(self) -> int:
        """The revised probability (percent of class 1) the prompt asks for."""
        return revised_confidence(
            to_percent(self.confidence), to_percent(abs(self.gap)), self.scenario
        )


@dataclass(frozen=True)
class SyntheticText:
    """A generated utterance.

    Attributes
    ----------
    text : str
    label : int
        The source item's class (what the text is trained with).
    source : int
        Validation position of the source item.
    scenario : str
    target_percent : int
        Probability of class 1 the prompt asked for.
    relabel : int
        Class the LLM assigned in stage 2 (-1 before relabeling).
    """

    text: str
    label: int
    source: int
    scenario: str
    target_percent: int
    relabel: int = -1


def requests_from_gaps(
    report: GapReport,
    texts: Sequence[str],
    labels: Sequence[int] | NDArray[np.int64],
    *,
    max_total: int | None = None,
    seed: int = 0,
) -> list[GenerationRequest]:
    """One request per item of every target bin (the paper's ``S1`` points).

    Parameters
    ----------
    report : GapReport
        From :func:`calibkit.synthetic.gaps.find_gaps` on the validation split.
    texts, labels : the validation texts and integer labels (aligned with ``report``).
    max_total : int, optional
        Cap on the number of requests (a generation budget): items are sampled without
        replacement with ``seed``, proportionally to the bin sizes (at least one per bin while
        the cap allows).
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(texts) != y.shape[0] or y.shape[0] != report.values.shape[0]:
        raise ValueError(
            f"texts ({len(texts)}), labels ({y.shape[0]}) and the gap report "
            f"({report.values.shape[0]}) must describe the same validation items"
        )
    if max_total is not None and max_total < 0:
        raise ValueError(f"max_total must be >= 0, got {max_total}")
    rng = np.random.default_rng(seed)
    chosen: dict[int, NDArray[np.int64]] = {t.bin: t.indices for t in report.targets}
    total = report.n_target
    if max_total is not None and total > max_total:
        sizes = np.array([t.count for t in report.targets], dtype=np.float64)
        quota = np.floor(sizes / sizes.sum() * max_total).astype(int)
        quota = np.maximum(quota, np.minimum(1, sizes.astype(int)))
        while quota.sum() > max_total:  # too many after the at-least-one floor
            quota[int(np.argmax(quota))] -= 1
        rest = max_total - int(quota.sum())
        order = np.argsort(-(sizes / sizes.sum() * max_total - quota), kind="stable")
        for j in order[:rest]:
            quota[j] += 1
        quota = np.minimum(quota, sizes.astype(int))
        chosen = {
            t.bin: np.sort(rng.choice(t.indices, size=int(q), replace=False))
            for t, q in zip(report.targets, quota, strict=True)
        }
    out = []
    for t in report.targets:
        for i in chosen[t.bin]:
            out.append(
                GenerationRequest(
                    text=str(texts[int(i)]),
                    label=int(y[int(i)]),
                    confidence=t.confidence,
                    gap=t.gap,
                    scenario=t.scenario,
                    source=int(i),
                    bin=t.bin,
                )
            )
    return out


_PREAMBLE = re.compile(
    r"^(here (are|is)|sure|okay|ok|certainly|of course|i (can|will|'ll)|these|below)\b", re.I
)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,2}[.):]|utterance\s*\d*\s*[:.)-])\s*", re.I)
_ANNOTATION = re.compile(
    r"\s*[\(\[][^()\[\]]*\d+\s*%[^()\[\]]*[\)\]]\s*\.?\s*$"  # "(65% complaint, 35% ...)"
)
_TRAILING_PCT = re.compile(r"\s*[-\u2013:]\s*\d+\s*%.*$")


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def is_degenerate(text: str, *, max_repeats: int = 2) -> bool:
    """Whether a text loops: some word 3-gram occurs more than ``max_repeats`` times (small
    greedy-decoded LLMs often write "I'm not sure. I'm not sure. I'm not sure ...")."""
    words = _norm(text).split()
    grams: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 2):
        g = tuple(words[i : i + 3])
        grams[g] = grams.get(g, 0) + 1
        if grams[g] > max_repeats:
            return True
    return False


def near_duplicate(a: str, b: str, *, threshold: float = 0.7) -> bool:
    """Whether two texts are near-copies: after lower-casing and dropping punctuation, one
    contains the other, or the Jaccard overlap of their word sets is at least ``threshold``
    (small LLMs often return the prompt's example or the source text with a word changed)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    na, nb = _norm(a), _norm(b)
    if not na or not nb:
        return na == nb
    if na in nb or nb in na:
        return True
    wa, wb = set(na.split()), set(nb.split())
    return len(wa & wb) / len(wa | wb) >= threshold


_META = re.compile(
    r"\b(utterances?|classif\w*|(this|the|original) example|the task|ready to help|"
    r"as an ai|belongs? \d+\s*%)",
    re.I,
)


def is_meta(text: str) -> bool:
    """Whether a generated text talks about the task instead of being an example of it
    ("This utterance is a mix of not_complaint and complaint", "I'm ready to help. What's the
    task?"): small instruction models often answer the prompt instead of following it."""
    return bool(_META.search(text))


def usable_utterances(
    answers: Sequence[str | None],
    sources: Sequence[str],
    examples: Sequence[str] = (),
    *,
    n_utterances: int = 3,
    threshold: float = 0.7,
) -> tuple[list[list[str]], dict[str, int]]:
    """The synthetic texts of a batch of answers (one per request; ``None`` = no answer).

    Each answer is split by :func:`parse_utterances`; an utterance is dropped when it talks
    about the task (:func:`is_meta`) or is a near-copy (:func:`near_duplicate`) of its request's
    source text, of a task example shown in the prompt, or of **any utterance kept before in
    the batch** (a small model often writes the same sentence for every request: one text,
    not many).

    Returns
    -------
    kept : list of list of str, aligned with ``answers``
    counts : dict with ``parsed``, ``meta`` and ``near_duplicates``
    """
    if len(answers) != len(sources):
        raise ValueError(f"{len(answers)} answers but {len(sources)} source texts")
    counts = {"parsed": 0, "meta": 0, "near_duplicates": 0}
    accepted: list[str] = []
    out: list[list[str]] = []
    for answer, source in zip(answers, sources, strict=True):
        mine: list[str] = []
        for u in [] if answer is None else parse_utterances(answer, n_utterances):
            counts["parsed"] += 1
            if is_meta(u):
                counts["meta"] += 1
                continue
            if any(near_duplicate(u, v, threshold=threshold) for v in (source, *examples)) or any(
                near_duplicate(u, v, threshold=threshold) for v in accepted
            ):
                counts["near_duplicates"] += 1
                continue
            accepted.append(u)
            mine.append(u)
        out.append(mine)
    return out, counts


def parse_utterances(text: str, n: int = 3, *, min_words: int = 3) -> list[str]:
    """Split an LLM answer into at most ``n`` utterances.

    One utterance per non-empty line (or per numbered item when the model wrote them on one
    line); list markers (``1.``, ``2)``, ``-``, ``*``), surrounding quotes, trailing probability
    annotations such as ``(65% complaint, 35% not_complaint)`` and preambles ("Here are 3
    utterances:") are removed; utterances shorter than ``min_words`` words, looping ones
    (:func:`is_degenerate`) and duplicates (case-insensitive) are dropped.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    raw = str(text).replace("\r", "\n")
    # "1. foo 2. bar 3. baz" on one line -> separate lines
    raw = re.sub(r"\s+(?=\(?\d{1,2}[.)]\s+\S)", "\n", raw)
    out: list[str] = []
    seen: set[str] = set()
    for line in raw.split("\n"):
        s = line.strip()
        if not s:
            continue
        s = _BULLET.sub("", s, count=1).strip()
        s = re.sub(r"^\*\*[^*]*\*\*\s*:?\s*", "", s)  # "**Utterance 1:**"
        s = _ANNOTATION.sub("", s).strip()
        s = _TRAILING_PCT.sub("", s).strip()
        s = s.strip(" \"'\u201c\u201d\u2018\u2019`").strip()
        if not s or (_PREAMBLE.match(s) and s.endswith(":")) or s.endswith(":"):
            continue
        if len(s.split()) < min_words or is_degenerate(s):
            continue
        key = _norm(s)
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
        if len(out) == n:
            break
    return out


def _open_cache(cache: ScoreCache | str | os.PathLike[str] | None, stack: ExitStack) -> Any:
    from calibkit.scoring.classify import open_cache

    return open_cache(cache, stack)


class SyntheticGenerator:
    """Stage 1: ask an LLM for ``n_utterances`` texts per target item.

    Parameters
    ----------
    backend : Backend
        Any :class:`~calibkit.scoring.backends.base.Backend`.
    task : TaskSpec
        Binary task with appendix C descriptions and examples.
    n_utterances : int
        Utterances asked per prompt (3 in the paper).
    max_new_tokens : int
        Decoding budget per prompt.
    cache : ScoreCache, path or None
        Raw generations are stored there (resumable).
    batch_size : int
        Prompts per backend call and per cache commit.
    progress : bool
        Progress bar.
    chat : bool or None
        Send chat messages (through the model's chat template) or one plain-text completion
        prompt (:func:`~calibkit.synthetic.prompts.generation_completion`, for base models).
        ``None``: chat when the backend has a chat template.
    dedup_threshold : float
        Word-set Jaccard overlap at which an utterance counts as a near-copy
        (:func:`near_duplicate`) of the source text, of a task example or of an utterance kept
        earlier in the same :meth:`generate` call, and is dropped.
    """

    def __init__(
        self,
        backend: Backend,
        task: TaskSpec,
        *,
        n_utterances: int = 3,
        max_new_tokens: int = 128,
        cache: ScoreCache | str | os.PathLike[str] | None = None,
        batch_size: int = 4,
        progress: bool = True,
        chat: bool | None = None,
        dedup_threshold: float = 0.7,
    ) -> None:
        if len(task.classes) != 2:
            raise ValueError(f"generation needs a binary task; {task.name} has {task.classes}")
        if n_utterances < 1 or max_new_tokens < 1 or batch_size < 1:
            raise ValueError("n_utterances, max_new_tokens and batch_size must be >= 1")
        self.backend = backend
        self.task = task
        self.n_utterances = n_utterances
        self.max_new_tokens = max_new_tokens
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self.chat = bool(getattr(backend, "has_chat_template", True)) if chat is None else chat
        if not 0.0 < dedup_threshold <= 1.0:
            raise ValueError(f"dedup_threshold must be in (0, 1], got {dedup_threshold}")
        self.dedup_threshold = dedup_threshold
        self.n_failed = 0  # requests of the last generate() call the backend failed on
        self.n_parsed = 0  # utterances parsed in the last generate() call, before the copy filter
        self.n_near_duplicates = 0  # of those, dropped as near-copies
        self.n_meta = 0  # of those, dropped as texts about the task

    def prompt(self, request: GenerationRequest) -> Prompt:
        """Chat messages for one request (system: appendix C; user: appendix A), or their
        completion-style rendering when :attr:`chat` is false."""
        msgs = generation_messages(
            self.task,
            request.text,
            request.confidence,
            request.gap,
            request.scenario,
            n_utterances=self.n_utterances,
        )
        return msgs if self.chat else generation_completion(msgs)

    def _key(self, prompt: Prompt) -> str:
        from calibkit.scoring.cache import cache_key

        return cache_key(
            _KEY_VERSION,
            self.backend.name,
            json.dumps(prompt, sort_keys=True),
            str(self.max_new_tokens),
        )

    def _run(self, prompts: list[Prompt]) -> list[str | ItemFailure]:
        gens = self.backend.generate(
            prompts,
            max_new_tokens=self.max_new_tokens,
            top_logprobs=0,
        )
        if len(gens) != len(prompts):
            raise ValueError(f"backend returned {len(gens)} generations for {len(prompts)} prompts")
        cue = "" if self.chat else COMPLETION_CUE.lstrip("\n")  # the answer starts mid-bullet
        return [g if isinstance(g, ItemFailure) else cue + g.text for g in gens]

    def raw(self, requests: Sequence[GenerationRequest]) -> list[str | ItemFailure]:
        """The LLM's raw answer to every request (cached), or the
        :class:`~calibkit.scoring.backends.base.ItemFailure` of a request that failed (not
        cached: a rerun tries it again)."""
        from calibkit.scoring.cache import map_cached

        prompts = [self.prompt(r) for r in requests]
        keys = [self._key(p) for p in prompts]
        with ExitStack() as stack:
            cache = _open_cache(self.cache, stack)
            return map_cached(
                self._run,
                prompts,
                keys,
                cache,
                batch_size=self.batch_size,
                desc="generating",
                progress=self.progress,
            )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[SyntheticText]:
        """Parsed utterances of every request (up to ``n_utterances`` each), not yet relabeled,
        filtered by :func:`usable_utterances` (near-copies and texts about the task dropped,
        counted in :attr:`n_near_duplicates` and :attr:`n_meta`)."""
        self.n_failed = 0
        answers: list[str | None] = []
        for answer in self.raw(requests):
            if isinstance(answer, ItemFailure):
                self.n_failed += 1  # no text is made up for a failed request
                answers.append(None)
            else:
                answers.append(answer)
        examples = [t for c in self.task.classes for t in self.task.examples.get(c, ())]
        kept, counts = usable_utterances(
            answers,
            [r.text for r in requests],
            examples,
            n_utterances=self.n_utterances,
            threshold=self.dedup_threshold,
        )
        self.n_parsed, self.n_near_duplicates, self.n_meta = (
            counts["parsed"],
            counts["near_duplicates"],
            counts["meta"],
        )
        return [
            SyntheticText(u, r.label, r.source, r.scenario, r.target_percent)
            for r, us in zip(requests, kept, strict=True)
            for u in us
        ]


def relabel(
    backend: Backend,
    task: TaskSpec,
    synthetic: Sequence[SyntheticText],
    *,
    mode: str = "next_token",
    cache: ScoreCache | str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[SyntheticText], NDArray[np.int64]]:
    """Stage 2: the LLM classifies every generated text; keep those of the source's class.

    Parameters
    ----------
    backend : Backend
    task : TaskSpec
    synthetic : sequence of SyntheticText
    mode : "next_token" (one forward pass per text) or "generate"
        Passed to :class:`~calibkit.scoring.ClassificationScorer`.

    Returns
    -------
    kept : list of SyntheticText
        Texts whose LLM class equals their label, with ``relabel`` filled in.
    predicted : (n,) int64
        The LLM's class of every input text (argmax of the class logits); ``-1`` where the
        backend failed on the text (such a text is not kept). If every text fails, the
        scorer's ``ItemsFailed`` is raised.
    """
    from calibkit.scoring.classify import ClassificationScorer

    items = list(synthetic)
    if not items:
        return [], np.zeros(0, dtype=np.int64)
    scorer = ClassificationScorer(
        backend,
        task.classes,
        relabel_template(task),
        mode=mode,  # type: ignore[arg-type]
        cache=cache,
        batch_size=batch_size,
        progress=progress,
    )
    scores = scorer.score([s.text for s in items], ids=np.arange(len(items)), on_error="skip")
    pred = np.full(len(items), -1, dtype=np.int64)
    pred[np.asarray(scores.ids, dtype=np.int64)] = scores.prediction
    kept = [replace(s, relabel=int(p)) for s, p in zip(items, pred, strict=True) if p == s.label]
    return kept, pred


def generate_synthetic(
    backend: Backend,
    task: TaskSpec,
    requests: Sequence[GenerationRequest],
    *,
    n_utterances: int = 3,
    max_new_tokens: int = 128,
    relabel_mode: str = "next_token",
    cache: ScoreCache | str | os.PathLike[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
    relabel_backend: Backend | None = None,
    chat: bool | None = None,
) -> tuple[list[SyntheticText], dict[str, int]]:
    """Both stages: generate for every request, then keep the texts the LLM relabels correctly.

    ``relabel_backend`` classifies in stage 2 (default: the generator, as in the paper); ``chat``
    is passed to :class:`SyntheticGenerator` (``None``: chat when the backend has a template).

    Returns
    -------
    kept : list of SyntheticText
    stats : dict
        ``requests``, ``parsed`` (utterances parsed), ``near_duplicates`` and ``meta`` (of those,
        dropped as near-copies or as texts about the task), ``generated`` (utterances sent to the relabel), ``kept``, ``unparsed`` (requests
        whose answer yielded no utterance, failed ones included), ``failed_generation``
        (requests the backend failed on) and ``failed_relabel`` (texts it failed to classify).
    """
    with ExitStack() as stack:
        c = _open_cache(cache, stack)
        gen = SyntheticGenerator(
            backend,
            task,
            n_utterances=n_utterances,
            max_new_tokens=max_new_tokens,
            cache=c,
            batch_size=batch_size,
            progress=progress,
            chat=chat,
        )
        texts = gen.generate(requests)
        kept, pred = relabel(
            relabel_backend or backend, task, texts, mode=relabel_mode, cache=c, progress=progress
        )
    sources = {t.source for t in texts}
    stats = {
        "requests": len(requests),
        "parsed": gen.n_parsed,
        "near_duplicates": gen.n_near_duplicates,
        "meta": gen.n_meta,
        "generated": len(texts),
        "kept": len(kept),
        "unparsed": sum(1 for r in requests if r.source not in sources),
        "failed_generation": gen.n_failed,
        "failed_relabel": int(np.sum(pred < 0)),
    }
    return kept, stats
