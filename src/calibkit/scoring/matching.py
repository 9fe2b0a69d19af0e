"""Matching token sets and logit aggregation: steps 1-2 of section 2.1 of *Label with Confidence*.

The class logit of class ``c`` is ``x_c = max_{t in M_c, j = 1..T} lp_j(t)``: the largest
log-probability that any token of its *matching token set* ``M_c`` gets at any output position
``j`` (paper 001, step 1). calibkit uses log-probabilities (log-softmax over the vocabulary) rather
than raw last-layer activations: at one position they give the same softmax over classes, across
positions they are comparable, and they are all that OpenAI-compatible servers return.

How ``M_c`` is built (:func:`matching_token_sets`):

1. *Surface variants* ``V_c`` of the class name and of its aliases: as given, lower case,
   capitalised, upper case, with ``_`` read as a space, each with and without a leading space.
2. Each variant is tokenised (no special tokens) by the backend's tokenizer.
3. ``M_c`` = the first tokens of the variants, minus any token that is also a first token of
   another class (a shared token is no evidence for either). A first token shorter than
   ``min(3, len(variant))`` characters is left out: it is a word fragment such as ``" S"`` of
   ``" SUBJECTIVE"`` that many unrelated answers start with.
4. Multi-token labels whose first tokens are all shared (``card_arrival`` vs ``card_linking``):
   ``M_c`` = the tokens that occur in ``c``'s variants and in no other class's variants, at any
   position. Step 4 does not apply in ``next_token`` mode (one position only), which then refuses
   such labels. A label whose tokens all occur in other labels (``complaint`` vs
   ``not complaint`` without a distinct single token) raises ``ValueError``; give aliases.

Without a tokenizer (HTTP backends), ``M_c`` = the variants themselves, and a reported token also
counts for ``c`` when it is a *prefix* of one of ``c``'s variants at least ``min(3, len(variant))``
characters long and a prefix of no other class's variant (``prefix_match``): the server spells a
multi-token name such as ``Sci/Tech`` as ``"Sci"``, ``"/"``, ``"Tech"``, and its first token
``"Sci"`` is what a tokenizer would have put in ``M_c`` (rule 3).

A token the backend did not report at a position (outside an HTTP server's top-k) is below every
token it did report there. So a class that no position reports at all is *filled* with an upper
bound on its true value: in ``next_token`` mode the smallest log-probability of all reported
tokens at that position; in ``generate`` mode the largest, over the output positions, of each
position's smallest reported log-probability (the class logit is a max over positions). The
aggregators say which classes were filled; a position set with nothing reported is an error (no
upper bound exists), never a score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from calibkit.scoring.backends.base import Generation

_MIN_FIRST_CHARS = 3

__all__ = [
    "TokenSets",
    "aggregate_generation",
    "aggregate_next_token",
    "aggregate_next_token_filled",
    "label_variants",
    "matching_token_sets",
]


def label_variants(label: str, *, case: bool = True) -> list[str]:
    """Surface forms of a label: case variants (if ``case``), ``_`` as space, +/- leading space."""
    base = str(label).strip()
    if not base:
        raise ValueError("a class name or alias is empty")
    forms = [base]
    if "_" in base:
        forms.append(base.replace("_", " "))
    out: list[str] = []
    for f in forms:
        cased = [f, f.lower(), f[:1].upper() + f[1:].lower(), f.upper()] if case else [f]
        for c in cased:
            for v in (c, " " + c):
                if v not in out:
                    out.append(v)
    return out


@dataclass(frozen=True)
class TokenSets:
    """Matching token sets ``M_c`` of ``K`` classes.

    Attributes
    ----------
    classes : tuple of K str
    tokens : tuple of K tuples of str
        ``M_c``: token strings whose log-probability counts for class ``c``.
    first_token : tuple of K bool
        Whether ``M_c`` came from first tokens (rule 3) or from distinctive tokens (rule 4).
    prefix_match : bool
        Also count a token that is a long-enough prefix of exactly one class's variants (no
        tokenizer; module docstring).
    variants : tuple of K tuples of str
        Every surface variant of each class (shared ones included), for ``prefix_match``.
    """

    classes: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    first_token: tuple[bool, ...]
    prefix_match: bool = False
    variants: tuple[tuple[str, ...], ...] = ()
    _memo: dict[str, tuple[int, ...]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def classes_of(self, token: str) -> tuple[int, ...]:
        """Indices of the classes whose matching set holds ``token`` (usually zero or one)."""
        hit = self._memo.get(token)
        if hit is not None:
            return hit
        out = [c for c, ts in enumerate(self.tokens) if token in ts]
        if self.prefix_match and token.strip():
            n = len(token.strip())
            starts = [
                c
                for c, vs in enumerate(self.variants)
                if any(v.startswith(token) and n >= min(3, len(v.strip())) for v in vs)
            ]
            if len(starts) == 1 and starts[0] not in out:
                # a prefix counts only when no other class's variant starts with it
                others = [
                    c
                    for c, vs in enumerate(self.variants)
                    if c != starts[0] and any(v.startswith(token) for v in vs)
                ]
                if not others:
                    out.append(starts[0])
        res = tuple(sorted(out))
        if len(self._memo) < 100_000:
            self._memo[token] = res
        return res

    @property
    def candidates(self) -> list[str]:
        """Every matching token, each once (for the backend's ``candidates``)."""
        seen: dict[str, None] = {}
        for ts in self.tokens:
            for t in ts:
                seen.setdefault(t, None)
        return list(seen)

    def to_dict(self) -> dict[str, list[str]]:
        return {c: list(t) for c, t in zip(self.classes, self.tokens, strict=True)}


def matching_token_sets(
    classes: Sequence[str],
    tokenize: Callable[[str], list[str]] | None,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    first_token_only: bool = False,
    case_variants: bool = True,
    prefix_match: bool | None = None,
) -> TokenSets:
    """Build the matching token set of every class (rules in the module docstring).

    Parameters
    ----------
    classes : sequence of K str
        Class names in column order.
    tokenize : callable or None
        ``text -> token strings`` (``TransformersBackend.tokenize``); ``None`` when the backend
        has no tokenizer.
    aliases : mapping class -> list of str, optional
        Extra surface forms per class (e.g. ``{"subjective": ["opinion"]}``).
    first_token_only : bool
        Refuse rule 4 (for ``next_token`` mode, where only the first position exists).
    case_variants : bool
        Include case variants (off for option letters, where ``a`` is a word).
    prefix_match : bool or None
        Count long-enough unambiguous prefixes of a class's variants (module docstring);
        default: only without a tokenizer.
    """
    cls = [str(c) for c in classes]
    if len(cls) < 2:
        raise ValueError(f"need at least 2 classes, got {cls}")
    if len(set(cls)) != len(cls):
        raise ValueError(f"class names must be unique, got {cls}")
    aliases = dict(aliases or {})
    unknown = sorted(set(aliases) - set(cls))
    if unknown:
        raise ValueError(f"aliases given for unknown classes {unknown}; classes are {cls}")
    variants = []
    for c in cls:
        vs: list[str] = []
        for form in [c, *aliases.get(c, [])]:
            for v in label_variants(form, case=case_variants):
                if v not in vs:
                    vs.append(v)
        variants.append(vs)

    if tokenize is None:
        sets = [set(vs) for vs in variants]
        out = []
        for k in range(len(cls)):
            others = set().union(*(sets[j] for j in range(len(cls)) if j != k))
            own = [v for v in variants[k] if v not in others]
            if not own:
                raise ValueError(
                    f"class {cls[k]!r} has no surface form distinct from other classes"
                )
            out.append(tuple(own))
        return TokenSets(
            tuple(cls),
            tuple(out),
            tuple(True for _ in cls),
            prefix_match=True if prefix_match is None else prefix_match,
            variants=tuple(tuple(vs) for vs in variants),
        )

    toks = [[[t for t in tokenize(v) if t.strip()] for v in vs] for vs in variants]
    firsts = [
        {tt[0] for v, tt in zip(vs, per, strict=True) if tt and _long_enough(tt[0], v)}
        for vs, per in zip(variants, toks, strict=True)
    ]
    alls = [{t for tt in per for t in tt} for per in toks]
    out_tokens: list[tuple[str, ...]] = []
    first_flags: list[bool] = []
    for k in range(len(cls)):
        other_first = set().union(*(firsts[j] for j in range(len(cls)) if j != k))
        own = sorted(firsts[k] - other_first)
        if own:
            out_tokens.append(tuple(own))
            first_flags.append(True)
            continue
        if first_token_only:
            shared = sorted(firsts[k])
            raise ValueError(
                f"class {cls[k]!r} shares its first token(s) {shared} with other classes, so a "
                "single next-token distribution cannot tell them apart; use mode='generate' or "
                "give distinct aliases"
            )
        other_all = set().union(*(alls[j] for j in range(len(cls)) if j != k))
        own = sorted(alls[k] - other_all)
        if not own:
            raise ValueError(
                f"every token of class {cls[k]!r} also occurs in another class's name; "
                "give it a distinct alias"
            )
        out_tokens.append(tuple(own))
        first_flags.append(False)
    return TokenSets(
        tuple(cls),
        tuple(out_tokens),
        tuple(first_flags),
        prefix_match=bool(prefix_match),
        variants=tuple(tuple(vs) for vs in variants) if prefix_match else (),
    )


def _long_enough(token: str, variant: str) -> bool:
    """Rule 3's guard: a first token must cover ``min(3, len(variant))`` characters."""
    return len(token.strip()) >= min(_MIN_FIRST_CHARS, len(variant.strip()))


def aggregate_generation(gen: Generation, sets: TokenSets) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 over a generated answer: class logits and the position of each class's maximum.

    Returns
    -------
    logits : (K,) float64
        ``max_{t in M_c, j} lp_j(t)``; a class reported at no position is filled with the upper
        bound ``max_j min_t lp_j(t)`` (module docstring).
    position : (K,) int64
        0-based output position where the maximum is attained, ``-1`` where filled.

    Raises
    ------
    ValueError
        The generation has no output position, or no position reports a log-probability.
    """
    if not gen.logprobs:
        raise ValueError("the generation has no output positions; nothing to score")
    k = len(sets.classes)
    logits = np.full(k, -np.inf)
    pos = np.full(k, -1, dtype=np.int64)
    bound = -np.inf
    for j, d in enumerate(gen.logprobs):
        finite = [v for v in d.values() if np.isfinite(v)]
        if finite:
            bound = max(bound, min(finite))
        for t, v in d.items():
            if not np.isfinite(v):
                continue
            for c in sets.classes_of(t):
                if v > logits[c]:
                    logits[c] = v
                    pos[c] = j
    missing = pos < 0
    if missing.any():
        if not np.isfinite(bound):
            raise ValueError("no output position reports a log-probability; nothing to score")
        logits[missing] = bound
    return logits, pos


def aggregate_next_token_filled(
    lp: Mapping[str, float], sets: TokenSets
) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 at the first answer position: ``max_{t in M_c} lp(t)`` and which classes were filled.

    Returns
    -------
    logits : (K,) float64
        A class with no reported token gets the smallest reported log-probability (an upper
        bound on its true value when ``lp`` is a top-k list).
    filled : (K,) bool

    Raises
    ------
    ValueError
        A class is missing and nothing at all was reported (no bound exists).
    """
    k = len(sets.classes)
    logits = np.full(k, -np.inf)
    for t, v in lp.items():
        if not np.isfinite(v):
            continue
        for c in sets.classes_of(t):
            if v > logits[c]:
                logits[c] = v
    filled = ~np.isfinite(logits)
    if filled.any():
        finite = [v for v in lp.values() if np.isfinite(v)]
        if not finite:
            raise ValueError("no log-probability reported at the answer position; nothing to score")
        logits[filled] = min(finite)
    return logits, filled


def aggregate_next_token(lp: Mapping[str, float], sets: TokenSets) -> np.ndarray:
    """Step 1 at the first answer position only: ``max_{t in M_c} lp(t)``, shape (K,)."""
    return aggregate_next_token_filled(lp, sets)[0]
