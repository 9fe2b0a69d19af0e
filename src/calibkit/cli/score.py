"""``calibkit score``: score a dataset with an LLM and write calibkit Scores.

Classification (``--task classify``) follows section 2.1 of *Label with Confidence*: the class
logits are the max answer-token log-probabilities over matching tokens and output positions
(``--mode generate``), or the first answer position only (``--mode next_token``, one forward
pass). Multiple choice (``--task mcq``) is equation 1 of *Restoring Calibration*: a softmax over
the option letters. Finished items go to a SQLite cache, so an interrupted run resumes.

--data is a table file (.csv .tsv .jsonl .json .parquet), a dataset name from the shared data
folder (subj, cr, sst2, trec, banking77, twitter_complaints, ddxplus_sample; arc_challenge,
arc_easy, mmlu, medmcqa, openbookqa) or a bundled sample (sample:subj, sample:arc_challenge).

Examples::

    calibkit score --data sample:subj --task classify --limit 50 -o subj.parquet
    calibkit score --data cr --split test --classes negative,positive --mode next_token -o cr.parquet
    calibkit score --data arc_challenge --split test --task mcq --limit 200 -o arc.parquet
    calibkit score --model openai:http://localhost:8000/v1::Qwen/Qwen2.5-7B-Instruct \\
        --data reviews.csv --classes negative,positive -o reviews.parquet
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "load_classification_input", "load_mcq_input", "run"]


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    out = [c.strip() for c in text.split(",") if c.strip()]
    return out or None


def _subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def load_classification_input(
    data: str, *, split: str | None, text_col: str, label_col: str, id_col: str
) -> Any:
    """A DataFrame with ``text`` and, when present, ``label`` and ``id`` columns."""
    import pandas as pd

    from calibkit import datasets

    path = Path(data)
    if data.startswith("sample:"):
        df = datasets.load_bundled_sample(data.split(":", 1)[1])
    elif path.is_file():
        from calibkit.io import read_table

        df = read_table(path, text_columns=[text_col, label_col, id_col])
        if split is not None:
            if "split" not in df.columns:
                raise ValueError(f"--split given but {path} has no 'split' column")
            df = df[df["split"].astype(str) == split]
    elif data.lower() in datasets.CLASSIFICATION:
        df = datasets.load_classification(data, split=split)
    else:
        raise ValueError(
            f"--data {data!r} is neither a file nor a classification dataset "
            f"({', '.join(sorted(datasets.CLASSIFICATION))}) nor sample:subj"
        )
    if text_col not in df.columns:
        raise ValueError(f"text column {text_col!r} not in the data (columns: {list(df.columns)})")
    out = pd.DataFrame({"text": df[text_col].astype(str).to_numpy()})
    if label_col in df.columns:
        out["label"] = df[label_col].astype(str).to_numpy()
    if id_col in df.columns:
        out["id"] = df[id_col].astype(str).to_numpy()
    return out


def load_mcq_input(data: str, *, split: str | None) -> list[Any]:
    """A list of :class:`calibkit.datasets.MCQItem`."""
    from calibkit import datasets

    path = Path(data)
    if data.startswith("sample:"):
        items = datasets.load_bundled_sample(data.split(":", 1)[1])
        if not isinstance(items, list):
            raise ValueError(f"{data} is not a multiple-choice sample; use sample:arc_challenge")
        return items
    if path.is_file():
        from calibkit.io import read_table

        df = read_table(path, text_columns=["id"])
        missing = {"question", "choices", "answer"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: multiple-choice data needs columns {sorted(missing)}")
        items = []
        for i, r in enumerate(df.to_dict("records")):
            items.append(
                datasets.MCQItem(
                    question=str(r["question"]),
                    choices=tuple(str(c) for c in r["choices"]),
                    answer=int(r["answer"]),
                    subject=str(r.get("subject") or ""),
                    id=str(r.get("id") or i),
                )
            )
        return items
    if data.lower() in datasets.MCQ:
        return datasets.load_mcq(data, split=split)
    raise ValueError(
        f"--data {data!r} is neither a file nor a multiple-choice dataset "
        f"({', '.join(sorted(datasets.MCQ))}) nor sample:arc_challenge"
    )


def _cache_path(args: argparse.Namespace) -> Path | None:
    if args.no_cache:
        return None
    if args.cache:
        return Path(args.cache)
    from calibkit.scoring.cache import default_cache_dir

    return default_cache_dir() / "scores.sqlite"


def _summary(scores: Any, seconds: float, n_scored: int) -> None:
    from rich.console import Console

    con = Console(stderr=True)
    msg = f"scored {n_scored} items in {seconds:.1f}s ({n_scored / max(seconds, 1e-9):.2f} items/s)"
    if scores.labels is not None:
        from calibkit.metrics import accuracy, ece

        msg += f"; accuracy {accuracy(scores.probs, scores.labels):.3f}"
        msg += f", ECE {ece(scores.probs, scores.labels, n_bins=10):.3f} (10 bins)"
    unparsed = scores.meta.get("n_unparsed")
    if scores.meta.get("mode") == "generate" and unparsed is not None:
        msg += f"; {unparsed} answers named no class"
    con.print(msg)


def run(args: argparse.Namespace) -> int:
    from calibkit.scoring.backends import make_backend
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.mcq import MultipleChoiceScorer
    from calibkit.scoring.prompts import MultipleChoiceTemplate, PromptTemplate

    if args.few_shot < 0:
        raise ValueError(f"--few-shot must be >= 0, got {args.few_shot}")
    out = Path(args.output)
    if out.suffix.lower() not in (".parquet", ".csv", ".jsonl", ".json"):
        raise ValueError(f"-o {out}: use a .parquet, .csv or .jsonl file")
    chat = False if args.plain else None
    rng = np.random.default_rng(args.seed)
    if args.task == "classify":
        df = load_classification_input(
            args.data,
            split=args.split,
            text_col=args.text_col,
            label_col=args.label_col,
            id_col=args.id_col,
        )
        classes = _split(args.classes)
        if classes is None:
            if "label" not in df.columns:
                raise ValueError("unlabeled data: give the class names with --classes")
            classes = sorted(df["label"].unique())
        template = PromptTemplate(
            chat=chat, **({"system_prompt": args.system_prompt} if args.system_prompt else {})
        )
        if args.few_shot:
            if "label" not in df.columns:
                raise ValueError("--few-shot needs labeled data to draw examples from")
            template = template.with_examples(
                df["text"].tolist(), df["label"].tolist(), args.few_shot, seed=args.seed
            )
            shown = set(template.examples)
            keep = [(t, lab) not in shown for t, lab in zip(df["text"], df["label"], strict=True)]
            df = df[keep].reset_index(drop=True)  # few-shot examples are not scored
        df = df.iloc[_subsample(len(df), args.limit, args.seed)].reset_index(drop=True)
        backend = make_backend(args.model, batch_size=args.batch_size)
        scorer = ClassificationScorer(
            backend,
            classes,
            template,
            mode=args.mode,
            max_new_tokens=args.max_new_tokens,
            cache=_cache_path(args),
            batch_size=max(args.batch_size, 16),
        )
        labels = df["label"].tolist() if "label" in df.columns else None
        ids = df["id"].to_numpy() if "id" in df.columns else None
        t0 = time.perf_counter()
        scores = scorer.score(df["text"].tolist(), labels=labels, ids=ids)
    else:
        items = load_mcq_input(args.data, split=args.split)
        mtemplate = MultipleChoiceTemplate(
            chat=chat, **({"system_prompt": args.system_prompt} if args.system_prompt else {})
        )
        if args.few_shot:
            if args.few_shot >= len(items):
                raise ValueError(f"--few-shot {args.few_shot} leaves no question to score")
            pick = set(rng.choice(len(items), size=args.few_shot, replace=False).tolist())
            shots = [(items[i].question, items[i].choices, items[i].answer) for i in sorted(pick)]
            mtemplate = MultipleChoiceTemplate(
                system_prompt=mtemplate.system_prompt, examples=shots, chat=chat
            )
            items = [it for i, it in enumerate(items) if i not in pick]
        items = [items[i] for i in _subsample(len(items), args.limit, args.seed)]
        backend = make_backend(args.model, batch_size=args.batch_size)
        mscorer = MultipleChoiceScorer(
            backend,
            mtemplate,
            mode="next_token" if args.mode_given is None else args.mode,
            max_new_tokens=args.max_new_tokens,
            cache=_cache_path(args),
            batch_size=max(args.batch_size, 16),
        )
        t0 = time.perf_counter()
        scores = mscorer.score(items)
    seconds = time.perf_counter() - t0
    scores.save(out)
    _summary(scores, seconds, len(scores))
    from rich.console import Console

    Console(stderr=True).print(f"wrote {out}")
    return 0


class _ModeAction(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.mode_given = values


def add_parser(subparsers: Any) -> None:
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
    p.add_argument("--classes", help="comma-separated class names (default: the labels, sorted)")
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
    p.add_argument("--plain", action="store_true", help="plain-text prompt, no chat template")
    p.add_argument("--limit", type=int, help="score a seeded random subset of N items")
    p.add_argument("--seed", type=int, default=0, help="seed for --limit and --few-shot")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    p.add_argument("--cache", help="SQLite cache (default <cache dir>/scores.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write a cache")
    p.add_argument("-o", "--output", required=True, help="output .parquet/.csv/.jsonl")
    p.set_defaults(func=run, mode_given=None)
