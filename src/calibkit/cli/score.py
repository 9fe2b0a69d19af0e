"""``calibkit score``: score a dataset with an LLM and write calibkit Scores.

Classification (``--task classify``) follows section 2.1 of *Label with Confidence*: the class
logits are the max answer-token log-probabilities over matching tokens and output positions
(``--mode generate``), or the first answer position only (``--mode next_token``, one forward
pass). Multiple choice (``--task mcq``) is equation 1 of *Restoring Calibration*: a softmax over
the option letters. Finished items go to a SQLite cache, so an interrupted run resumes.

--data is a table file (.csv .tsv .jsonl .json .parquet), a dataset name from the shared data
folder (subj, cr, sst2, trec, banking77, twitter_complaints, ddxplus_sample; arc_challenge,
arc_easy, mmlu, medmcqa, openbookqa) or a bundled sample (sample:subj, sample:arc_challenge).

Every output row carries ``row``, the 0-based data row of the input it came from (after --split,
--few-shot and --limit the rows are a subset; join back on ``row``), and ``id`` (the id column,
or ``row`` when there is none); ``--keep-text`` adds the text (the question for mcq).

When things go wrong: an item that cannot be scored (an HTTP error or timeout after the retries,
a reply without usable log-probabilities, an empty answer) is never given a score and never
cached; everything scored before it is. ``--on-error fail`` (default) stops at the first such
item with one ``error:`` line naming it (exit 2); ``--on-error skip`` writes the other rows,
lists the failures (also in the output's metadata, ``meta.failures``) and exits 3, or 0 with
``--allow-partial``. A rerun with the same cache scores only what is missing. Ctrl-C stops at
once (exit 130) and says how many items are cached.

Confidence without log-probabilities (``--task classify``): ``--confidence logits`` (default) is
the answer-token log-probabilities above; ``ptrue`` asks the model whether its own answer is true
and reads P(True) (one token's log-probabilities); ``verbalized`` has it state a 0-100%
confidence and ``consistency`` takes the vote share over ``--samples`` samples (both text only:
they work on servers that return no log-probabilities); ``auto`` uses ``logits`` when the model
returns log-probabilities, else the cheapest text-only estimator meeting ``--auto-target`` on the
labelled rows (it says which and why). The right/wrong estimators (ptrue, verbalized) write the
columns ``wrong``/``right``: the label is whether the model's answer was correct. The metadata
records the estimator, its cost (model calls, output tokens) and how many replies could not be
read (a verbalized confidence that cannot be read is an item failure, never a made-up value).

Examples::

    calibkit score --data sample:subj --task classify --limit 50 -o subj.parquet
    calibkit score --data cr --split test --classes negative,positive --mode next_token -o cr.parquet
    calibkit score --data arc_challenge --split test --task mcq --limit 200 -o arc.parquet
    calibkit score --model openai:http://localhost:8080/v1::gpt-4o-mini --data cr \
        --split test --limit 200 --confidence auto -o cr_conf.parquet
    calibkit score --model openai:http://localhost:8000/v1::Qwen/Qwen2.5-7B-Instruct \\
        --data reviews.csv --classes negative,positive --timeout 60 --on-error skip \\
        -o reviews.parquet
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.scoring.inputs import RowRef, load_classification_input, load_mcq_input

__all__ = ["EXIT_PARTIAL", "add_parser", "load_classification_input", "load_mcq_input", "run"]

#: exit code of ``score --on-error skip`` when some items were skipped (without --allow-partial)
EXIT_PARTIAL = 3
#: failures printed one per line before the rest are summarised
_MAX_LISTED = 20


def _say(message: str) -> None:
    """One plain line on stderr (no markup: user text stays intact, never wrapped)."""
    print(" ".join(str(message).splitlines()), file=sys.stderr, flush=True)


def _subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _cache_path(args: argparse.Namespace) -> Path | None:
    if args.no_cache:
        return None
    if args.cache:
        return Path(args.cache)
    from calibkit.scoring.cache import default_cache_dir

    return default_cache_dir() / "scores.sqlite"


def _http_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--timeout`` ... as backend keyword arguments; only for a model served over HTTP."""
    opts = {
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "max_concurrency": args.concurrency,
        "requests_per_second": args.requests_per_second,
    }
    given = {k: v for k, v in opts.items() if v is not None}
    if not given:
        return {}
    from calibkit.scoring.backends.openai_http import is_openai_spec

    if not is_openai_spec(args.model):
        flags = {
            "timeout": "--timeout",
            "max_retries": "--max-retries",
            "max_concurrency": "--concurrency",
            "requests_per_second": "--requests-per-second",
        }
        names = ", ".join(flags[k] for k in given)
        raise ValueError(f"{names}: only for a model served over HTTP (--model openai:...)")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ValueError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    if args.max_retries is not None and args.max_retries < 0:
        raise ValueError(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.concurrency is not None and args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    rps = args.requests_per_second
    if rps is not None and not (math.isfinite(rps) and rps > 0):
        raise ValueError(f"--requests-per-second must be > 0, got {rps}")
    return given


def _check_output(args: argparse.Namespace) -> Path:
    """The output path, checked before any work: suffix, not a folder, not the input, writable."""
    out = Path(args.output)
    if out.suffix.lower() not in (".parquet", ".csv", ".jsonl", ".json"):
        raise ValueError(
            f"-o {out}: score writes .parquet, .csv or .jsonl (uncompressed; compress the file "
            "afterwards if needed)"
        )
    if out.is_dir():
        raise ValueError(f"-o {out} is a folder; give a file name")
    data = Path(args.data)
    if data.is_file() and (
        out.resolve() == data.resolve() or (out.exists() and out.samefile(data))
    ):
        raise ValueError(f"-o {out} is the input data file; writing it would overwrite the input")
    from calibkit._atomic import check_writable

    check_writable(out, what="-o")
    if out.suffix.lower() != ".parquet":
        side = out.with_name(out.name + ".meta.json")
        if side.is_dir():
            raise ValueError(f"{side} (the metadata file of -o) is a folder")
    return out


def _open_cache(path: Path | None, stack: ExitStack) -> Any:
    """The ScoreCache, opened (and so checked: usable, writable) before any model is loaded."""
    if path is None:
        return None
    from calibkit.scoring.cache import ScoreCache

    return stack.enter_context(ScoreCache(path))


def _describe(f: dict[str, Any], ref: RowRef) -> str:
    """``data row 8 (file line 9), id 'x': reason`` (the id only when it is not the row)."""
    row = int(f["row"])
    ident = "" if str(f.get("id")) == str(row) else f", id {f['id']!r}"
    return f"{ref(row)}{ident}: {f['reason']}"


def _source_failures(
    failures: Sequence[dict[str, Any]], rows: Sequence[int] | NDArray[np.int64]
) -> list[dict[str, Any]]:
    """Scorer failures (``row`` = position in the scored list) with ``row`` = the source row."""
    return [{**f, "row": int(rows[int(f["row"])])} for f in failures]


def _summary(scores: Any, seconds: float, stats: dict[str, int]) -> None:
    if "estimator" in scores.meta:
        _confidence_summary(scores, seconds, stats)
        return
    n_new = int(stats.get("n_new", 0))
    n_cached = int(stats.get("n_cached", 0))
    msg = f"scored {n_new} new items in {seconds:.1f}s"
    if n_new:
        msg += f" ({n_new / max(seconds, 1e-9):.2f} items/s)"
    if n_cached:
        msg += f"; {n_cached} from the cache"
    msg += f"; {len(scores)} rows"
    if scores.labels is not None:
        from calibkit.metrics import accuracy, ece

        msg += f"; accuracy {accuracy(scores.probs, scores.labels):.3f}"
        msg += f", ECE {ece(scores.probs, scores.labels, n_bins=10):.3f} (10 bins)"
    unparsed = scores.meta.get("n_unparsed")
    if scores.meta.get("mode") == "generate" and unparsed is not None:
        msg += f"; {unparsed} answers named no class"
    _say(msg)
    n_filled = int(scores.meta.get("n_filled_missing") or 0)
    if n_filled:
        _say(
            f"note: in {n_filled} of {len(scores)} rows a class was not among the log-"
            "probabilities the server reported (its top-k); its logit there is an upper bound "
            "(the smallest reported log-probability)"
        )
        per_class = scores.meta.get("filled_per_class") or {}
        never = [c for c, k in per_class.items() if int(k) == len(scores)]
        if never:
            _say(
                f"warning: class {never[0]!r}"
                + (f" (and {len(never) - 1} more)" if len(never) > 1 else "")
                + f" was never reported by the model in any of the {len(scores)} rows: its "
                "scores are only upper bounds; check the class names (give --classes as the "
                "model writes them) or raise the server's top_logprobs"
            )


def _confidence_summary(scores: Any, seconds: float, stats: dict[str, int]) -> None:
    """The summary of a ``--confidence`` run: accuracy of the model's answers and the ECE of its
    confidence in them (P(correct), 10 bins), the estimator, its cost and unparseable count."""
    from calibkit.scoring.confidence.cli import summary_lines

    for line in summary_lines(scores.meta):
        _say(line)
    n_new = int(stats.get("n_new", 0))
    n_cached = int(stats.get("n_cached", 0))
    msg = f"scored {n_new} new items in {seconds:.1f}s"
    if n_cached:
        msg += f"; {n_cached} from the cache"
    msg += f"; {len(scores)} rows"
    if scores.labels is not None and len(scores):
        from calibkit.scoring.confidence.select import correctness, pcorrect_ece

        conf, correct = correctness(scores)
        msg += f"; answer accuracy {float(correct.mean()):.3f}"
        msg += f", ECE of the confidence {pcorrect_ece(conf, correct):.3f} (10 bins)"
    _say(msg)


def _report_failures(failures: Sequence[dict[str, Any]], ref: RowRef, n: int) -> None:
    _say(f"warning: {len(failures)} of {n} items could not be scored and are not in the output:")
    for f in failures[:_MAX_LISTED]:
        _say(f"  skipped {_describe(f, ref)}")
    if len(failures) > _MAX_LISTED:
        _say(f"  ... and {len(failures) - _MAX_LISTED} more (all listed in meta.failures)")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt as e:
        if str(e):  # the scorer says how much is cached
            raise
        raise KeyboardInterrupt("stopped; no output was written") from None


@dataclass
class _Job:
    """What one ``score`` run scores: the source rows and texts, how to name a row, and how to
    build the scorer and call it."""

    rows: NDArray[np.int64]
    texts: list[str]
    ref: RowRef
    build: Callable[[Any, Any, int], Any]  # (backend, cache, batch size) -> scorer
    call: Callable[[Any], Any]  # scorer -> Scores


def _check_args(args: argparse.Namespace) -> None:
    """Everything about the numbers given that can be checked before any work."""
    if args.few_shot < 0:
        raise ValueError(f"--few-shot must be >= 0, got {args.few_shot}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    from calibkit.scoring.confidence.cli import check_confidence_args

    check_confidence_args(args)


def _system_kw(args: argparse.Namespace) -> dict[str, Any]:
    return {"system_prompt": args.system_prompt} if args.system_prompt else {}


def _classify_job(args: argparse.Namespace, chat: bool | None) -> _Job:
    from calibkit.cli._args import parse_classes
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.prompts import PromptTemplate

    df, ref = load_classification_input(
        args.data,
        split=args.split,
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
        with_ref=True,
    )
    classes = parse_classes(args.classes)
    if classes is None:
        if "label" not in df.columns:
            raise ValueError("unlabeled data: give the class names with --classes")
        classes = sorted(df["label"].unique())
    elif "label" in df.columns:  # checked now, not after the model has loaded
        unknown = sorted(set(df["label"]) - set(classes))
        if unknown:
            raise ValueError(
                f"labels {unknown[:5]} in column {args.label_col!r} are not among the "
                f"classes {classes}"
            )
    template = PromptTemplate(chat=chat, **_system_kw(args))
    if args.few_shot:
        if "label" not in df.columns:
            raise ValueError("--few-shot needs labeled data to draw examples from")
        template = template.with_examples(
            df["text"].tolist(), df["label"].tolist(), args.few_shot, seed=args.seed
        )
        shown = set(template.examples)
        keep = [(t, lab) not in shown for t, lab in zip(df["text"], df["label"], strict=True)]
        df = df[keep].reset_index(drop=True)  # few-shot examples are not scored
        if len(df) == 0:
            raise ValueError(f"--few-shot {args.few_shot} leaves no text to score")
    df = df.iloc[_subsample(len(df), args.limit, args.seed)].reset_index(drop=True)
    rows = df["row"].to_numpy(dtype=np.int64)
    texts = df["text"].tolist()
    labels = df["label"].tolist() if "label" in df.columns else None
    ids = df["id"].to_numpy() if "id" in df.columns else rows
    if getattr(args, "confidence", "logits") == "auto" and labels is None:
        raise ValueError(
            "--confidence auto chooses the estimator on labelled rows: the data has no label "
            f"column {args.label_col!r}"
        )

    def build(backend: Any, cache: Any, batch_size: int) -> Any:
        from calibkit.scoring.confidence.cli import confidence_scorer

        conf = confidence_scorer(
            args, backend, classes, template, cache=cache, batch_size=batch_size
        )
        if conf is not None:
            return conf
        return ClassificationScorer(
            backend,
            classes,
            template,
            mode=args.mode,
            max_new_tokens=args.max_new_tokens,
            cache=cache,
            batch_size=batch_size,
        )

    def call(scorer: Any) -> Any:
        return scorer.score(texts, labels=labels, ids=ids, on_error=args.on_error)

    return _Job(rows=rows, texts=texts, ref=ref, build=build, call=call)


def _mcq_job(args: argparse.Namespace, chat: bool | None) -> _Job:
    from calibkit.scoring.mcq import MultipleChoiceScorer
    from calibkit.scoring.prompts import MultipleChoiceTemplate

    items, ref = load_mcq_input(args.data, split=args.split, with_ref=True)
    src_rows = list(range(len(items)))
    template = MultipleChoiceTemplate(chat=chat, **_system_kw(args))
    if args.few_shot:
        if args.few_shot >= len(items):
            raise ValueError(f"--few-shot {args.few_shot} leaves no question to score")
        rng = np.random.default_rng(args.seed)
        pick = set(rng.choice(len(items), size=args.few_shot, replace=False).tolist())
        shots = [(items[i].question, items[i].choices, items[i].answer) for i in sorted(pick)]
        template = MultipleChoiceTemplate(
            system_prompt=template.system_prompt, examples=shots, chat=chat
        )
        src_rows = [r for r in src_rows if r not in pick]
    sel = _subsample(len(src_rows), args.limit, args.seed)
    rows = np.asarray([src_rows[i] for i in sel], dtype=np.int64)
    mitems = [items[r] for r in rows]

    def build(backend: Any, cache: Any, batch_size: int) -> Any:
        return MultipleChoiceScorer(
            backend,
            template,
            mode="next_token" if args.mode_given is None else args.mode,
            max_new_tokens=args.max_new_tokens,
            cache=cache,
            batch_size=batch_size,
        )

    def call(scorer: Any) -> Any:
        return scorer.score(mitems, on_error=args.on_error)

    return _Job(rows=rows, texts=[it.question for it in mitems], ref=ref, build=build, call=call)


def _score(job: _Job, scorer: Any, cached: bool, on_error: str) -> Any:
    """``job.call(scorer)``, its failures turned into one error naming the source row."""
    from calibkit.scoring.backends.openai_http import BackendError
    from calibkit.scoring.classify import ItemsFailed

    try:
        return job.call(scorer)
    except ItemsFailed as e:
        failures = _source_failures(e.failures, job.rows)
        first = _describe(failures[0], job.ref)
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        kept = (
            f"{e.n_cached} of {e.n_items} items are cached; a rerun scores only the rest"
            if cached
            else "nothing is cached (--no-cache)"
        )
        hint = "" if on_error == "skip" else "; --on-error skip writes the other rows"
        raise ValueError(f"could not score {first}{more}; {kept}{hint}") from None
    except BackendError as e:
        n_done = int(scorer.last_run.get("n_cached", 0)) + int(scorer.last_run.get("n_new", 0))
        kept = f"; {n_done} of {len(job.rows)} items are cached, a rerun resumes" if cached else ""
        raise ValueError(f"{e}{kept}") from None


def _with_rows(scores: Any, job: _Job, keep_text: bool) -> tuple[Any, list[dict[str, Any]]]:
    """The Scores with every row's source ``row`` (and text), failures with their source row."""
    failures = _source_failures(scores.meta.get("failures") or [], job.rows)
    failed_pos = {int(f["row"]) for f in scores.meta.get("failures") or []}
    kept_pos = [i for i in range(len(job.rows)) if i not in failed_pos]
    if len(kept_pos) != len(scores):  # pragma: no cover - the scorer keeps the others in order
        raise RuntimeError(f"{len(scores)} scored rows for {len(kept_pos)} kept items")
    per_item = dict(scores.per_item)
    per_item["row"] = job.rows[kept_pos]
    if keep_text:
        txt = np.empty(len(kept_pos), dtype=object)
        for j, i in enumerate(kept_pos):
            txt[j] = job.texts[i]
        per_item["text"] = txt
    return replace(scores, meta={**scores.meta, "failures": failures}, per_item=per_item), failures


def _run(args: argparse.Namespace) -> int:
    from calibkit.scoring.backends import make_backend

    _check_args(args)
    out = _check_output(args)
    backend_kw = _http_options(args)
    chat = False if args.plain else None
    scorer_batch = max(args.batch_size, 16, int(args.concurrency or 0))
    with ExitStack() as stack:
        cache = _open_cache(_cache_path(args), stack)
        job = _classify_job(args, chat) if args.task == "classify" else _mcq_job(args, chat)
        backend = make_backend(args.model, batch_size=args.batch_size, **backend_kw)
        scorer = job.build(backend, cache, scorer_batch)
        t0 = time.perf_counter()
        scores = _score(job, scorer, cache is not None, args.on_error)
        seconds = time.perf_counter() - t0
        stats = dict(scorer.last_run)
    scores, failures = _with_rows(scores, job, args.keep_text)
    scores.save(out)
    _summary(scores, seconds, stats)
    _say(f"wrote {out}")
    if failures:
        _report_failures(failures, job.ref, len(job.rows))
        if not args.allow_partial:
            _say(
                f"exit code {EXIT_PARTIAL}: the output is partial (--allow-partial accepts it "
                "with exit 0); rerun to retry the skipped items"
            )
            return EXIT_PARTIAL
    return 0


class _ModeAction(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.mode_given = values


def add_parser(subparsers: Any) -> None:
    from calibkit.cli._args import add_classes_argument
    from calibkit.cli.evaluate import plain_description

    p = subparsers.add_parser(
        "score",
        help="score a dataset with an LLM (classify or mcq)",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="smollm2",
        help="smollm2 (bundled, default), gemma3-270m, a .gguf file, a model folder, a hub id, "
        "or openai:<base_url>::<model> for an OpenAI-compatible server",
    )
    p.add_argument("--data", required=True, help="table file, dataset name or sample:<name>")
    p.add_argument("--task", choices=("classify", "mcq"), default="classify")
    p.add_argument("--split", help="dataset split to score (train, test, validation ...)")
    add_classes_argument(p, "class names (default: the labels, sorted)")
    p.add_argument("--text-col", default="text", help="text column (default text)")
    p.add_argument("--label-col", default="label", help="label column, if any (default label)")
    p.add_argument("--id-col", default="id", help="id column, if any (default id)")
    p.add_argument(
        "--mode",
        choices=("generate", "next_token"),
        default="generate",
        action=_ModeAction,
        help="generate: paper 001's max over answer positions (default for classify); "
        "next_token: one forward pass (default for mcq)",
    )
    p.add_argument("--max-new-tokens", type=int, default=5, help="answer positions searched")
    p.add_argument(
        "--few-shot",
        type=int,
        default=0,
        metavar="K",
        help="K few-shot examples drawn from the data (not scored)",
    )
    p.add_argument("--system-prompt", help="replace the default system prompt")
    p.add_argument(
        "--plain",
        action="store_true",
        help="plain-text prompt, no chat template (an HTTP model gets it on /completions)",
    )
    p.add_argument("--limit", type=int, help="score a seeded random subset of N items")
    p.add_argument("--seed", type=int, default=0, help="seed for --limit and --few-shot")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    p.add_argument("--cache", help="SQLite cache (default <cache dir>/scores.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write a cache")
    p.add_argument(
        "--keep-text",
        action="store_true",
        help="also write each row's text (the question for mcq) to the output",
    )
    g = p.add_argument_group("failures (see 'When things go wrong' above)")
    g.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="an item that cannot be scored: fail = stop with an error naming it (default); "
        f"skip = write the other rows, list the failures, exit {EXIT_PARTIAL}",
    )
    g.add_argument(
        "--allow-partial",
        action="store_true",
        help="with --on-error skip: exit 0 even when items were skipped",
    )
    h = p.add_argument_group("HTTP models (--model openai:...)")
    h.add_argument("--timeout", type=float, help="seconds to connect and per read (default 30)")
    h.add_argument(
        "--max-retries", type=int, help="extra attempts after a transient failure (default 5)"
    )
    h.add_argument("--concurrency", type=int, help="requests in flight at once (default 4)")
    h.add_argument(
        "--requests-per-second", type=float, help="sustained request rate limit (default none)"
    )
    from calibkit.scoring.confidence.cli import add_confidence_arguments

    add_confidence_arguments(p)
    p.add_argument("-o", "--output", required=True, help="output .parquet/.csv/.jsonl")
    p.set_defaults(func=run, mode_given=None)
