"""The metric registry: every metric calibkit reports, by name.

One :class:`Metric` entry per metric (name, display name, function, lower-is-better, binned or
not, needs labels or not, input kind, aliases); ``calibkit evaluate`` / ``fit`` / ``apply`` /
``demo``, the streaming accumulators, the fine-tuning report and the HTML report read it, so a
metric added with one :func:`register_metric` call shows up everywhere (computed by
:func:`calibkit.metrics.compute_metrics`)::

    from calibkit.metrics import register_metric

    def overconfidence(probs, labels, *, from_logits=False):
        ...  # (n, K) or (n,) probabilities in, a float out

    register_metric("overconfidence", overconfidence, display="Over-conf.")

Input kinds (what a metric reads of the scores):

* ``"probs"``: the whole probability vector (Brier, NLL, cw-ECE);
* ``"top_label"``: the top-label confidence and its correctness, through bins or a mean (ECE
  family, ACE, conf-ECE, accuracy, HELM's ``ece_10_bin`` / ``ece_1_bin``);
* ``"ranking"``: only the order of the items by confidence, for correctness (AUROC, AURC, PRR,
  selective accuracy).

Every function takes ``(probs, labels)`` (``(n, K)`` class probabilities or ``(n,)`` =
``P(y = 1)``; ``labels`` ``(n,)`` int) plus, where it accepts them, the keyword options
``n_bins``, ``binning`` and ``from_logits`` (``probs`` are then logits); a metric that needs no
labels takes ``(probs)`` only. It returns a float; ``nan`` means undefined on this input (AUROC
when every prediction is right), never a made-up value.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike

from calibkit.metrics.calibration_error import (
    ace,
    classwise_ece,
    conf_ece,
    debiased_ece,
    ece,
    mce,
    rms_ce,
)
from calibkit.metrics.ranking import (
    auprc,
    aurc,
    auroc,
    e_aurc,
    ece_1_bin,
    ece_10_bin,
    prr,
    selective_acc_at_10,
    selective_cov_acc_area,
)
from calibkit.metrics.scoring_rules import accuracy, brier_score, nll

__all__ = [
    "METRICS",
    "OPTIONS",
    "InputKind",
    "Metric",
    "get_metric",
    "metric_names",
    "register_metric",
    "resolve_metric_names",
    "unregister_metric",
]

InputKind = Literal["probs", "top_label", "ranking"]

#: keyword options a metric function may accept (:func:`calibkit.metrics.compute_metrics` passes them)
OPTIONS: tuple[str, ...] = ("n_bins", "binning", "from_logits")


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes
    ----------
    name : str
        Registry key, as in JSON output and ``--metrics`` (no spaces or commas).
    display : str
        Short human name for tables (``"cw-ECE"``).
    fn : callable
        ``fn(probs, labels, **options) -> float`` (``fn(probs, **options)`` when
        ``needs_labels`` is false).
    lower_is_better : bool
        Direction of improvement (tables colour a change by it).
    binned : bool
        Whether the metric bins the scores (its value depends on the bins).
    needs_labels : bool
        Whether it compares the scores with gold labels.
    input_kind : {"probs", "top_label", "ranking"}
        What it reads of the scores (module docstring).
    aliases : tuple of str
        Other names accepted by :func:`get_metric` and ``--metrics``.
    options : frozenset of str
        The keyword options of :data:`OPTIONS` that ``fn`` accepts; :func:`compute_metrics`
        passes ``n_bins`` / ``binning`` only to metrics that take them (ACE and conf-ECE take
        ``n_bins`` with their own binning; HELM's ECEs fix their bins).
    default : bool
        Whether :func:`compute_metrics` (and ``calibkit evaluate``) reports it when no names are
        given.
    additive : bool
        The metric is the mean of a per-item loss (accuracy, Brier, NLL), so means of batches
        combine by their sizes: the streaming accumulators compute every additive metric.
    prefers_logits : bool
        Given the logits of the same scores, compute from them (``from_logits=True``): NLL is
        then the exact log-softmax instead of clipped probabilities.
    description : str
        One line for documentation and ``--help``.
    """

    name: str
    display: str
    fn: Callable[..., Any]
    lower_is_better: bool
    binned: bool = False
    needs_labels: bool = True
    input_kind: InputKind = "probs"
    aliases: tuple[str, ...] = ()
    options: frozenset[str] = field(default_factory=frozenset)
    default: bool = True
    additive: bool = False
    prefers_logits: bool = False
    description: str = ""

    def __call__(
        self,
        probs: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        n_bins: int = 15,
        binning: str = "uniform",
        from_logits: bool = False,
    ) -> float:
        """The metric's value on ``probs`` (logits with ``from_logits``) and ``labels``.

        ``n_bins`` and ``binning`` go to the function only when it takes them. Raises
        ``ValueError`` naming the metric when labels are missing, logits are not accepted, or
        the function returns something that is not one real number.
        """
        kw: dict[str, Any] = {}
        if "n_bins" in self.options:
            kw["n_bins"] = n_bins
        if "binning" in self.options:
            kw["binning"] = binning
        if from_logits:
            if "from_logits" not in self.options:
                raise ValueError(f"metric {self.name!r} takes probabilities, not logits")
            kw["from_logits"] = True
        if self.needs_labels:
            if labels is None:
                raise ValueError(f"metric {self.name!r} needs labels")
            out = self.fn(probs, labels, **kw)
        else:
            out = self.fn(probs, **kw)
        return _as_float(self.name, out)


def _as_float(name: str, value: Any) -> float:
    """A metric's return value as a float; anything but one real number is an error."""
    if isinstance(value, bool | str | bytes) or np.ndim(value) != 0:
        raise ValueError(f"metric {name!r} returned {value!r}, not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} returned {value!r}, not a number") from None
    if math.isinf(v):
        raise ValueError(f"metric {name!r} returned {v}; a metric must be finite (or nan)")
    return v


#: every registered metric by name, in display order
METRICS: dict[str, Metric] = {}
#: alias -> registry name
_ALIASES: dict[str, str] = {}


def _check_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty string; got {name!r}")
    if name != name.strip() or any(c.isspace() or c == "," for c in name):
        raise ValueError(f"{what} {name!r} may not contain spaces or commas")
    return name


def _infer_options(fn: Callable[..., Any]) -> frozenset[str]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset(OPTIONS)
    return frozenset(o for o in OPTIONS if o in params)


def register_metric(
    name: str,
    fn: Callable[..., Any],
    *,
    display: str | None = None,
    lower_is_better: bool = True,
    binned: bool | None = None,
    needs_labels: bool = True,
    input_kind: InputKind = "probs",
    aliases: Sequence[str] = (),
    options: Iterable[str] | None = None,
    default: bool = True,
    additive: bool = False,
    prefers_logits: bool = False,
    description: str = "",
    replace: bool = False,
) -> Metric:
    """Register a metric under ``name`` (see :class:`Metric` for the fields) and return it.

    Parameters
    ----------
    fn : callable
        ``fn(probs, labels, **options) -> float`` with probabilities ``(n, K)`` or ``(n,)``;
        ``fn(probs, **options)`` when ``needs_labels=False``.
    options : iterable of str, optional
        Which of ``n_bins``, ``binning``, ``from_logits`` ``fn`` accepts; by default read from
        its signature (parameters of those names; ``**kwargs`` means all three).
    binned : bool, optional
        Default: whether ``fn`` takes ``n_bins``.
    default : bool
        Report it by default (``calibkit evaluate``, ``fit``, :func:`compute_metrics`).
    replace : bool
        Allow replacing a metric registered under ``name``; otherwise a taken name (or alias)
        is an error.

    Raises
    ------
    ValueError
        A bad or taken name or alias, an unknown option or input kind, or contradictory flags.
    """
    _check_name("metric name", name)
    if not callable(fn):
        raise ValueError(f"metric {name!r}: fn must be callable; got {type(fn).__name__}")
    if input_kind not in get_args(InputKind):
        raise ValueError(
            f"metric {name!r}: input_kind must be one of {get_args(InputKind)}; got {input_kind!r}"
        )
    opts = _infer_options(fn) if options is None else frozenset(options)
    unknown = sorted(opts - set(OPTIONS))
    if unknown:
        raise ValueError(f"metric {name!r}: unknown option(s) {unknown}; known: {OPTIONS}")
    is_binned = "n_bins" in opts if binned is None else bool(binned)
    if additive and is_binned:
        raise ValueError(f"metric {name!r}: a binned metric is not a mean of per-item losses")
    if prefers_logits and "from_logits" not in opts:
        raise ValueError(f"metric {name!r}: prefers_logits needs fn to accept from_logits")
    alias_list = [_check_name(f"metric {name!r} alias", a) for a in aliases]
    if len(set(alias_list)) != len(alias_list) or name in alias_list:
        raise ValueError(f"metric {name!r}: aliases repeat a name: {alias_list}")
    old = METRICS.get(name)
    if old is not None and not replace:
        raise ValueError(f"metric name {name!r} is taken; pick another name or pass replace=True")
    for key in [name, *alias_list]:
        owner = key if key in METRICS and key != name else _ALIASES.get(key)
        if owner is not None and owner != name:
            raise ValueError(f"metric name {key!r} is taken (by {owner!r}); pick another name")
    if old is not None:
        unregister_metric(name)
    metric = Metric(
        name=name,
        display=display or name,
        fn=fn,
        lower_is_better=bool(lower_is_better),
        binned=is_binned,
        needs_labels=bool(needs_labels),
        input_kind=input_kind,
        aliases=tuple(alias_list),
        options=opts,
        default=bool(default),
        additive=bool(additive),
        prefers_logits=bool(prefers_logits),
        description=description,
    )
    METRICS[name] = metric
    for a in alias_list:
        _ALIASES[a] = name
    return metric


def unregister_metric(name: str) -> Metric:
    """Remove the metric registered as ``name`` (or an alias of it) and return it."""
    metric = get_metric(name)
    del METRICS[metric.name]
    for a in metric.aliases:
        _ALIASES.pop(a, None)
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric called ``name`` (or with that alias); ``ValueError`` listing the
    known names otherwise."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(key, str) or key not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return METRICS[key]


def metric_names(
    *,
    default: bool | None = None,
    input_kind: InputKind | None = None,
    additive: bool | None = None,
) -> list[str]:
    """Registered metric names in display order, optionally filtered by the flags given."""
    return [
        m.name
        for m in METRICS.values()
        if (default is None or m.default == default)
        and (input_kind is None or m.input_kind == input_kind)
        and (additive is None or m.additive == additive)
    ]


def resolve_metric_names(names: str | Iterable[str] | None) -> list[str]:
    """Registry names for ``names``: ``None`` -> the default metrics; ``"all"`` -> every
    metric; otherwise names or aliases (a string may be comma-separated), duplicates dropped.

    Raises ``ValueError`` naming an unknown metric, or for an empty selection.
    """
    if names is None:
        return metric_names(default=True)
    items = names.split(",") if isinstance(names, str) else list(names)
    parts = [str(n).strip() for n in items if str(n).strip()]
    if not parts:
        raise ValueError("no metric names given")
    if parts == ["all"]:
        return list(METRICS)
    out: list[str] = []
    for p in parts:
        key = get_metric(p).name
        if key not in out:
            out.append(key)
    return out


# ---------------------------------------------------------------------- built-in metrics
_BINNED = frozenset({"n_bins", "binning", "from_logits"})
_N_BINS = frozenset({"n_bins", "from_logits"})  # their own binning (ACE: equal-mass)
_PLAIN = frozenset({"from_logits"})
_LBL, _TOP, _RANK = "probs", "top_label", "ranking"
_OFF = {"default": False}

#: (name, display, fn, lower is better, options, input kind, other fields), in display order:
#: calibration, then the four ranking metrics the CLI reports, then those reported on request
_BUILTINS: tuple[tuple[str, str, Callable[..., Any], bool, frozenset[str], Any, dict], ...] = (
    ("accuracy", "Accuracy", accuracy, False, _PLAIN, _TOP, {"additive": True}),
    ("ece", "ECE", ece, True, _BINNED, _TOP, {}),
    ("mce", "MCE", mce, True, _BINNED, _TOP, {}),
    ("ace", "ACE", ace, True, _N_BINS, _TOP, {}),
    ("rms_ce", "RMS-CE", rms_ce, True, _BINNED, _TOP, {}),
    ("conf_ece", "conf-ECE", conf_ece, True, _N_BINS, _TOP, {}),
    ("cw_ece", "cw-ECE", classwise_ece, True, _BINNED, _LBL, {"aliases": ("classwise_ece",)}),
    ("brier", "Brier", brier_score, True, _PLAIN, _LBL, {"additive": True, "aliases": ("brier_score",)}),
    ("nll", "NLL", nll, True, _PLAIN, _LBL, {"additive": True, "prefers_logits": True, "aliases": ("log_loss",)}),
    ("auroc", "AUROC", auroc, False, _PLAIN, _RANK, {}),
    ("aurc", "AURC", aurc, True, _PLAIN, _RANK, {}),
    ("prr", "PRR", prr, False, _PLAIN, _RANK, {}),
    ("selective_acc@10", "Sel. acc@10", selective_acc_at_10, False, _PLAIN, _RANK, {"aliases": ("selective_acc_at_10",)}),
    ("debiased_ece", "debiased ECE", debiased_ece, True, _BINNED, _TOP, _OFF),
    ("auprc", "AUPRC", auprc, False, _PLAIN, _RANK, _OFF),
    ("e_aurc", "E-AURC", e_aurc, True, _PLAIN, _RANK, _OFF),
    ("selective_cov_acc_area", "Sel. cov-acc area", selective_cov_acc_area, False, _PLAIN, _RANK, _OFF),
    ("ece_10_bin", "ECE 10-bin (HELM)", ece_10_bin, True, _PLAIN, _TOP, {"binned": True, **_OFF}),
    ("ece_1_bin", "ECE 1-bin (HELM)", ece_1_bin, True, _PLAIN, _TOP, {"binned": True, **_OFF}),
)  # fmt: skip

_DESCRIPTIONS = {
    "accuracy": "fraction of correct top-label predictions",
    "ece": "expected calibration error (L1 over bins)",
    "mce": "maximum calibration error over bins",
    "ace": "adaptive calibration error, equal-mass bins (paper 001 eq. 2)",
    "rms_ce": "root-mean-square (L2) calibration error",
    "conf_ece": "confidence-ECE (paper 002 appendix C.1)",
    "cw_ece": "classwise ECE: mean one-vs-rest ECE over the classes (paper 002)",
    "brier": "Brier score (multiclass: in [0, 2])",
    "nll": "negative log-likelihood, natural log",
    "auroc": "AUROC of confidence for correctness",
    "aurc": "area under the risk-coverage curve",
    "prr": "prediction-rejection ratio (LM-Polygraph's prr_normalized)",
    "selective_acc@10": "HELM's selective_acc@10: accuracy of the most confident 10%",
    "debiased_ece": "Kumar et al. (2019) debiased L2 calibration error",
    "auprc": "average precision of confidence for correctness",
    "e_aurc": "excess AURC over the oracle ranking",
    "selective_cov_acc_area": "HELM's selective_cov_acc_area (= 1 - AURC)",
    "ece_10_bin": "HELM's ece_10_bin: top-label ECE, 10 equal-mass bins",
    "ece_1_bin": "HELM's ece_1_bin: |mean confidence - accuracy|",
}

for _name, _display, _fn, _lower, _opts, _kind, _extra in _BUILTINS:
    register_metric(
        _name,
        _fn,
        display=_display,
        lower_is_better=_lower,
        options=_opts,
        input_kind=_kind,
        description=_DESCRIPTIONS[_name],
        **_extra,
    )
