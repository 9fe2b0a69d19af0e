"""Read the per-sample files of lm-evaluation-harness (``lm_eval --log_samples``) into ``Scores``.

For a multiple-choice task lm-eval scores each choice ``j`` of a document by the log-likelihood
``ll_j = log P(target_delimiter + choice_j | context)`` (a sum over the continuation's tokens) and
reports (``ConfigurableTask.process_results``, lm-eval 0.4):

* ``acc``: ``argmax_j ll_j == gold``;
* ``acc_norm``: ``argmax_j ll_j / len(choice_j) == gold``, ``len`` in characters of the choice
  without the delimiter;
* ``acc_bytes``: the same with ``len(choice_j.encode("utf-8"))``.

:func:`read_lm_eval_samples` returns one row per document with logits ``ll_j`` (``normalization=
"none"``), ``ll_j / len(choice_j)`` (``"length"``, acc_norm's scores) or ``ll_j / bytes_j``
(``"bytes"``); their softmax is the model's distribution over the choices (for ``"none"``, the
choice likelihoods renormalised over the choices). The argmax of each variant is the prediction
lm-eval scores, so calibkit's accuracy equals lm-eval's ``acc`` / ``acc_norm`` / ``acc_bytes``;
where the file logs those per-sample values they are checked row by row.

Classes are the option letters ``A, B, ...``; a document with fewer choices than the widest gets
the logit ``max_j ll_j - 1e4`` for the missing ones (probability ``exp(-1e4) = 0``, yet finite).

File layout (lm-eval 0.4; one JSON object per line): ``doc_id``, ``target`` (a choice index, or
the choice text, as a string), ``arguments`` (``{"gen_args_<j>": {"arg_0": context, "arg_1":
continuation}}``, or the older ``[[context, continuation], ...]``), ``filtered_resps`` (one
``[log-likelihood, is_greedy]`` pair per choice, numbers or strings), and optionally the
per-sample metrics ``acc`` / ``acc_norm`` / ``acc_bytes``. Generation tasks, single-continuation
``loglikelihood`` tasks, multiple gold answers and ``acc_mutual_info`` are refused with the
sample named.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from calibkit.scores import Scores

__all__ = [
    "LM_EVAL_FORMATS",
    "Normalization",
    "add_format_argument",
    "read_for_cli",
    "read_lm_eval_samples",
]

Normalization = Literal["none", "length", "bytes"]

#: ``--format`` values -> normalization
LM_EVAL_FORMATS: dict[str, Normalization] = {
    "lm-eval": "none",
    "lm-eval-norm": "length",
    "lm-eval-bytes": "bytes",
}
_CHECKED_METRIC = {"none": "acc", "length": "acc_norm", "bytes": "acc_bytes"}
#: a missing choice's logit, relative to the best choice of its document
_MISSING_GAP = -1e4
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _where(path: Path, line: int, doc_id: Any) -> str:
    return f"{path}, line {line} (doc_id {doc_id!r})"


def _continuations(rec: Mapping[str, Any], where: str) -> list[str]:
    args = rec.get("arguments")
    pairs: list[Any]
    if isinstance(args, Mapping):
        keys = sorted(
            args,
            key=lambda k: int(m.group(1)) if (m := re.fullmatch(r"gen_args_(\d+)", str(k))) else -1,
        )
        if any(not re.fullmatch(r"gen_args_\d+", str(k)) for k in keys):
            raise ValueError(
                f"{where}: field 'arguments' has keys {list(args)[:4]}, expected gen_args_<j>"
            )
        pairs = [
            [args[k].get("arg_0"), args[k].get("arg_1")] if isinstance(args[k], Mapping) else None
            for k in keys
        ]
    elif isinstance(args, list):
        pairs = list(args)
    else:
        raise ValueError(f"{where}: field 'arguments' is missing or not a list/object")
    out = []
    for j, pr in enumerate(pairs):
        if not isinstance(pr, list | tuple) or len(pr) < 2 or not isinstance(pr[1], str):
            raise ValueError(
                f"{where}: field 'arguments' entry {j} is not a (context, continuation) pair of "
                "strings; is this a multiple-choice task?"
            )
        out.append(pr[1])
    return out


def _loglik(v: Any, where: str, j: int) -> float:
    pair = v
    if isinstance(pair, list | tuple) and len(pair) == 1 and isinstance(pair[0], list | tuple):
        pair = pair[0]  # "resps" nesting: [[ll, greedy]]
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise ValueError(
            f"{where}: field 'filtered_resps' entry {j} is {str(v)[:60]!r}, not a "
            "[log-likelihood, is_greedy] pair; is this a multiple-choice task?"
        )
    raw = pair[0]
    try:
        if isinstance(raw, bool):
            raise TypeError
        ll = float(raw)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field 'filtered_resps' entry {j} holds {str(raw)[:60]!r}, not a "
            "log-likelihood number"
        ) from None
    if not math.isfinite(ll):
        raise ValueError(f"{where}: field 'filtered_resps' entry {j} is {ll} (not finite)")
    if ll > 1e-6:
        raise ValueError(
            f"{where}: field 'filtered_resps' entry {j} is {ll}, a log-likelihood must be <= 0"
        )
    return ll


def _gold(rec: Mapping[str, Any], choices: list[str], where: str) -> int:
    if "target" not in rec:
        raise ValueError(f"{where}: field 'target' is missing")
    t = rec["target"]
    if isinstance(t, bool):
        raise ValueError(f"{where}: field 'target' is a boolean {t!r}")
    if isinstance(t, list) or (isinstance(t, str) and t.strip().startswith("[")):
        raise ValueError(
            f"{where}: field 'target' is {str(t)[:60]!r}: several gold answers are not supported"
        )
    if isinstance(t, int | float) or (isinstance(t, str) and re.fullmatch(r"\s*-?\d+\s*", t)):
        if isinstance(t, float) and not float(t).is_integer():
            raise ValueError(f"{where}: field 'target' is {t!r}, not a choice index")
        g = int(t)
        if not 0 <= g < len(choices):
            raise ValueError(
                f"{where}: field 'target' is {g}, outside the {len(choices)} choices 0..{len(choices) - 1}"
            )
        return g
    if isinstance(t, str):
        if t in choices:
            return choices.index(t)
        raise ValueError(
            f"{where}: field 'target' {t[:60]!r} is not one of the choices {choices[:6]}"
        )
    raise ValueError(f"{where}: field 'target' has type {type(t).__name__}")


def _logged_metric(rec: Mapping[str, Any], key: str, where: str) -> float | None:
    if key not in rec:
        return None
    v = rec[key]
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field {key!r} is {v!r}, not a number") from None
    if x not in (0.0, 1.0):
        raise ValueError(f"{where}: field {key!r} is {x}, expected 0 or 1")
    return x


def _sample(
    rec: dict[str, Any],
    where: str,
    normalization: Normalization,
    target_delimiter: str,
    metric: str | None,
) -> tuple[list[float], int, list[str], bool]:
    """``(logits, gold, choices, checked)`` of one multiple-choice sample record.

    ``metric``: the logged per-sample metric to check the prediction against (None: no check);
    ``checked`` says whether the record logged it.
    """
    if "acc_mutual_info" in (rec.get("metrics") or []):
        raise ValueError(f"{where}: acc_mutual_info samples are not supported")
    resps = rec.get("filtered_resps")
    if not isinstance(resps, list):
        raise ValueError(f"{where}: field 'filtered_resps' is missing or not a list")
    if len(resps) < 2:
        raise ValueError(
            f"{where}: field 'filtered_resps' has {len(resps)} entries; a multiple-choice "
            "sample has one per choice (2 or more)"
        )
    conts = _continuations(rec, where)
    if len(conts) != len(resps):
        raise ValueError(f"{where}: {len(conts)} arguments but {len(resps)} filtered_resps")
    if len(conts) > len(_LETTERS):
        raise ValueError(f"{where}: {len(conts)} choices; at most 26 are supported")
    lls = [_loglik(v, where, j) for j, v in enumerate(resps)]
    choices = [
        c[len(target_delimiter) :] if target_delimiter and c.startswith(target_delimiter) else c
        for c in conts
    ]
    gold = _gold(rec, choices, where)
    if normalization == "none":
        z = lls
    else:
        lens = [
            float(len(c) if normalization == "length" else len(c.encode("utf-8"))) for c in choices
        ]
        if min(lens) == 0:
            raise ValueError(f"{where}: a choice is empty; cannot divide by its length")
        z = [ll / n for ll, n in zip(lls, lens, strict=True)]
    logged = _logged_metric(rec, metric, where) if metric is not None else None
    if logged is not None:
        mine = float(int(np.argmax(z)) == gold)
        if mine != logged:
            raise ValueError(
                f"{where}: the logged {metric} is {logged:g} but the log-likelihoods give "
                f"{mine:g} (prediction {int(np.argmax(z))}, gold {gold}); wrong "
                f"target_delimiter ({target_delimiter!r})?"
            )
    return z, gold, choices, logged is not None


def _to_scores(
    p: Path,
    rows: list[list[float]],
    golds: list[int],
    ids: list[Any],
    all_choices: list[list[str]],
    normalization: Normalization,
    target_delimiter: str,
    metric: str,
    checked: int,
) -> Scores:
    """The (n, K) logits of ragged ``rows`` (missing choices far below the rest) as Scores."""
    k = max(len(r) for r in rows)
    logits = np.empty((len(rows), k), dtype=np.float64)
    for i, r in enumerate(rows):
        logits[i, : len(r)] = r
        logits[i, len(r) :] = max(r) + _MISSING_GAP
    task = re.sub(r"^samples_|_\d{4}-\d{2}-\d{2}T[\d\-.:]+$", "", p.stem)
    return Scores(
        logits=logits,
        labels=np.asarray(golds, dtype=np.int64),
        classes=tuple(_LETTERS[:k]),
        ids=np.asarray(ids, dtype=object if any(isinstance(i, str) for i in ids) else np.int64),
        meta={
            "source": "lm-eval",
            "file": str(p),
            "task": task,
            "normalization": normalization,
            "target_delimiter": target_delimiter,
            "n_choices": [len(r) for r in rows],
            "choices": all_choices,
            f"checked_{metric}": checked,
        },
    )


def read_lm_eval_samples(
    path: str | os.PathLike[str],
    *,
    normalization: Normalization = "none",
    target_delimiter: str = " ",
    check_logged: bool = True,
) -> Scores:
    """Read ``samples_<task>_<date>.jsonl`` of a multiple-choice task into :class:`Scores`.

    Parameters
    ----------
    path : path-like
        A per-sample file written by ``lm_eval ... --log_samples``.
    normalization : {"none", "length", "bytes"}
        Logits ``ll_j`` (acc), ``ll_j / len(choice_j)`` (acc_norm) or ``ll_j / bytes(choice_j)``
        (acc_bytes); see the module docstring.
    target_delimiter : str
        The task's ``target_delimiter`` (lm-eval's default ``" "``), stripped from the front of
        each continuation to recover the choice text that ``len`` measures.
    check_logged : bool
        Check the prediction against the file's per-sample ``acc`` / ``acc_norm`` /
        ``acc_bytes`` where logged (a mismatch is an error naming the sample).

    Returns
    -------
    Scores
        ``(n, K)`` logits (log-likelihoods, possibly normalised; not probabilities), labels
        (gold choice index), classes ``A, B, ...``, ids = ``doc_id``, and ``meta`` with
        ``source="lm-eval"``, ``task``, ``normalization``, ``n_choices`` and ``choices``.

    Raises
    ------
    ValueError
        A malformed line or field (named with the line and doc_id), a non-multiple-choice task,
        a repeated doc_id, an empty file.
    """
    if normalization not in _CHECKED_METRIC:
        raise ValueError(
            f"normalization must be 'none', 'length' or 'bytes'; got {normalization!r}"
        )
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"lm-eval samples file {p} not found")
    rows: list[list[float]] = []
    golds: list[int] = []
    ids: list[Any] = []
    all_choices: list[list[str]] = []
    seen: dict[Any, int] = {}
    metric = _CHECKED_METRIC[normalization]
    checked = 0
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}, line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{p}, line {lineno}: not a JSON object")
            doc_id = rec.get("doc_id")
            where = _where(p, lineno, doc_id)
            if isinstance(doc_id, bool) or not isinstance(doc_id, int | str):
                raise ValueError(f"{where}: field 'doc_id' is missing or not an int/str")
            if doc_id in seen:
                raise ValueError(
                    f"{where}: doc_id repeats line {seen[doc_id]} (several filters in one file?)"
                )
            seen[doc_id] = lineno
            z, gold, choices, was_checked = _sample(
                rec, where, normalization, target_delimiter, metric if check_logged else None
            )
            checked += was_checked
            rows.append(z)
            golds.append(gold)
            ids.append(doc_id)
            all_choices.append(choices)
    if not rows:
        raise ValueError(f"{p} has no samples")
    return _to_scores(
        p, rows, golds, ids, all_choices, normalization, target_delimiter, metric, checked
    )


def read_for_cli(args: Any, path: str | os.PathLike[str]) -> Scores:
    """``--format lm-eval`` / ``lm-eval-norm`` / ``lm-eval-bytes`` of ``calibkit evaluate`` /
    ``fit``: the samples file as :class:`Scores`; table column options do not apply."""
    fmt = getattr(args, "format", None)
    if fmt not in LM_EVAL_FORMATS:
        raise ValueError(
            f"--format {fmt!r} is not an lm-eval format ({', '.join(LM_EVAL_FORMATS)})"
        )
    for opt in ("prob_cols", "logit_cols", "prob_col", "logit_col", "classes"):
        if getattr(args, opt, None) is not None:
            raise ValueError(
                f"--{opt.replace('_', '-')} does not apply to --format {fmt} (the samples file "
                "names its choices A, B, ...)"
            )
    return read_lm_eval_samples(path, normalization=LM_EVAL_FORMATS[fmt])


def add_format_argument(p: Any) -> None:
    """``--format {table, lm-eval, lm-eval-norm, lm-eval-bytes}`` for ``evaluate`` / ``fit``
    (read by :func:`calibkit.cli.evaluate.load_scored`)."""
    p.add_argument(
        "--format",
        choices=("table", *LM_EVAL_FORMATS),
        default="table",
        help="input format: a scored table (default), or an lm_eval --log_samples file of a "
        "multiple-choice task: lm-eval (log-likelihoods, as acc), lm-eval-norm (per character, "
        "as acc_norm), lm-eval-bytes (per UTF-8 byte, as acc_bytes)",
    )
