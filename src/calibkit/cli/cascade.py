"""``calibkit cascade train|apply|report``: the cost-aware cascade of LLM labelers (paper 001).

Each model's scores are one calibkit Scores file (``calibkit score`` output, calibrated with
``calibkit apply`` if wanted), aligned by item id; pass them cheapest model first.

Examples::

    calibkit cascade train zs.parquet fs.parquet gemma.parquet --costs 1,4.1,2.3 \\
        --names zero-shot,few-shot,gemma --n-bins 5 --trials 400 --out policy.json
    calibkit cascade apply policy.json zs.parquet fs.parquet gemma.parquet --out labels.csv
    calibkit cascade report policy.json zs.parquet fs.parquet gemma.parquet --out report.md \\
        --plot frontier.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.ensemble._io import atomic_path, atomic_savefig, atomic_write_text
from calibkit.scores import Scores

__all__ = ["add_parser", "run_apply", "run_report", "run_train"]


def _load_stack(paths: list[str], names: str | None) -> Any:
    from calibkit.ensemble import stack_scores

    if len(paths) < 1:
        raise ValueError("give one Scores file per model")
    scores = []
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"scores file {p} not found")
        scores.append(Scores.load(p))
    name_list = None
    if names:
        name_list = [n.strip() for n in names.split(",")]
    elif all(not s.meta.get("model") and not s.meta.get("name") for s in scores):
        name_list = [Path(p).stem for p in paths]
    st = stack_scores(scores, names=name_list)
    # per-item prompt-token counts (``meta["prompt_tokens"]``), for per-token prices
    tokens = None
    if all(len(s.meta.get("prompt_tokens") or []) == len(s) for s in scores):
        key0 = [str(i) for i in st.ids]
        cols = []
        for s in scores:
            by_id = dict(zip((str(i) for i in s.ids), s.meta["prompt_tokens"], strict=True))
            cols.append([float(by_id[i]) for i in key0])
        tokens = np.asarray(cols, dtype=np.float64).T
    return st, tokens


def _item_costs(costs: Any, n: int, tokens: Any) -> Any:
    """(n, K) per-item costs; per-token prices use the files' ``meta["prompt_tokens"]``."""
    from calibkit.ensemble import cost_matrix

    try:
        return cost_matrix(costs, n, input_tokens=tokens)
    except ValueError as exc:
        if "no input_tokens" in str(exc):
            raise ValueError(
                f"{exc}: the Scores files carry no meta['prompt_tokens'] for per-token prices"
            ) from None
        raise


def _edges_arg(text: str) -> list[list[float]]:
    p = Path(text)
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise FileNotFoundError(f"edges file {p} not found")
        obj = json.loads(p.read_text())
        return [list(map(float, e)) for e in (obj["edges"] if isinstance(obj, dict) else obj)]
    try:
        return [[float(x) for x in part.split(",") if x.strip()] for part in text.split(";")]
    except ValueError:
        raise ValueError(
            f"--edges {text!r}: expected 'e,e;e,e' (one group per model) or a .json file"
        ) from None


def _costs(spec: str | None, names: tuple[str, ...], policy_costs: Any = None) -> Any:
    from calibkit.ensemble import parse_costs

    if spec:
        return parse_costs(spec, names=list(names))
    if policy_costs is not None:
        return policy_costs
    return None


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cascade",
        help="train, apply and report a cost-aware cascade of LLMs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cascade_command", metavar="ACTION", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser(
        "train", help="search bin edges (Optuna) and train the policy", formatter_class=fmt
    )
    t.add_argument("scores", nargs="+", help="labeled Scores files, one per model, cheapest first")
    t.add_argument("--out", required=True, help="policy JSON to write")
    t.add_argument("--names", help="comma-separated model names (default: from the files)")
    t.add_argument("--costs", help="per-call costs '1,3,10' or a JSON file (see docs/cascade.md)")
    t.add_argument("--n-bins", type=int, default=5, help="bins per model (paper: 5 or 10)")
    t.add_argument("--edges", help="fixed edges 'e,e;e,e' or JSON: skip the search")
    t.add_argument("--trials", type=int, default=400, help="Optuna trials")
    t.add_argument("--splits", type=int, default=10, help="repeated train/test splits per trial")
    t.add_argument("--test-size", type=float, default=0.2)
    t.add_argument("--strategies", default="single,majority,weighted_vote,most_confident")
    t.add_argument("--space", choices=["quantile", "value"], default="quantile")
    t.add_argument(
        "--cost-penalty",
        type=float,
        default=0.0,
        help="hits lost per cheapest-model cost unit (Algorithm 1 reward)",
    )
    t.add_argument(
        "--cost-weight", type=float, default=0.0, help="objective = F1 - w x relative cost"
    )
    t.add_argument("--budget", type=float, help="max mean relative cost (x cheapest model)")
    t.add_argument("--average", choices=["binary", "macro", "micro"], default="binary")
    t.add_argument("--pos-label", type=int, default=1)
    t.add_argument(
        "--storage",
        help="Optuna storage: an RDB URL (default sqlite:///<out>.optuna.db), 'journal:PATH' "
        "(faster file journal) or 'memory'",
    )
    t.add_argument("--study-name", help="Optuna study name (default: from --out)")
    t.add_argument("--timeout", type=float, help="stop the search after this many seconds")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run_train)

    a = sub.add_parser("apply", help="run a trained policy on Scores files", formatter_class=fmt)
    a.add_argument("policy", help="policy JSON from 'cascade train'")
    a.add_argument("scores", nargs="+", help="Scores files, one per model, same order as training")
    a.add_argument("--out", required=True, help="CSV/JSONL/Parquet with id, label, depth, strategy")
    a.add_argument("--costs", help="override the policy's costs")
    a.set_defaults(func=run_apply)

    r = sub.add_parser(
        "report", help="Table-3-like comparison and frontier plot", formatter_class=fmt
    )
    r.add_argument("policy", help="policy JSON trained on the (calibrated) scores")
    r.add_argument("scores", nargs="+", help="labeled test Scores files, one per model")
    r.add_argument("--uncal-policy", help="policy trained on uncalibrated scores")
    r.add_argument("--uncal-scores", nargs="+", help="uncalibrated test Scores, one per model")
    r.add_argument("--costs", help="override the policy's costs")
    r.add_argument("--average", choices=["binary", "macro", "micro"], default="binary")
    r.add_argument("--pos-label", type=int, default=1)
    r.add_argument("--out", help="write the Markdown table here")
    r.add_argument("--json", dest="json_out", help="write the rows as JSON here")
    r.add_argument("--plot", help="write the cost-accuracy frontier here (.png/.pdf/.svg)")
    r.set_defaults(func=run_report)


def run_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from calibkit.ensemble import CascadePolicy
    from calibkit.ensemble.search import search_edges

    console = Console(stderr=True)
    st, tokens = _load_stack(args.scores, args.names)
    if st.labels is None:
        raise ValueError("training a cascade needs labeled Scores files")
    costs = _costs(args.costs, st.names)
    if costs is not None:
        # the policy keeps one mean cost per model (per-token prices averaged over these items)
        costs = _item_costs(costs, len(st.labels), tokens).mean(axis=0).tolist()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    out = Path(args.out)
    if args.edges:
        pol = CascadePolicy(
            edges=_edges_arg(args.edges),
            strategies=strategies,
            costs=costs,
            cost_penalty=args.cost_penalty,
            model_names=list(st.names),
        ).fit(st.probs, st.labels)
        pol.save(out)
        console.print(f"trained on {len(st.labels)} items with fixed edges -> {out}")
        return 0
    storage = args.storage or f"sqlite:///{out.with_suffix('.optuna.db')}"
    if storage == "memory":
        storage = None
    res = search_edges(
        st.probs,
        st.labels,
        n_bins=args.n_bins,
        n_trials=args.trials,
        n_splits=args.splits,
        test_size=args.test_size,
        strategies=strategies,
        costs=costs,
        cost_penalty=args.cost_penalty,
        cost_weight=args.cost_weight,
        budget=args.budget,
        space=args.space,
        average=args.average,
        pos_label=args.pos_label,
        seed=args.seed,
        storage=storage,
        study_name=args.study_name or out.stem,
        timeout=args.timeout,
        show_progress=not args.no_progress,
        model_names=list(st.names),
    )
    res.policy.save(out)
    share = ", ".join(
        f"{n} {x:.0%}" for n, x in zip(st.names, _share(res.policy, st.probs), strict=True)
    )
    console.print(
        f"{res.n_trials} trials; best mean CV F1 {res.cv.f1:.4f} at {res.cv.relative_cost:.2f}x "
        f"the cheapest model's cost; trained on all {len(st.labels)} items -> {out}\n"
        f"share of items reaching each model (training set): {share}"
    )
    return 0


def _share(policy: Any, probs: Any) -> Any:
    return policy.cascade(probs).called.mean(axis=0)


def run_apply(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.console import Console

    from calibkit.ensemble import CascadePolicy, summarize_cost

    console = Console(stderr=True)
    pol = CascadePolicy.load(args.policy)
    st, tokens = _load_stack(args.scores, None)
    if st.n_models != pol.n_models_:
        raise ValueError(
            f"the policy has {pol.n_models_} models but {st.n_models} files were given"
        )
    res = pol.cascade(st.probs)
    df = pd.DataFrame(
        {
            "id": st.ids,
            "label": np.asarray(st.classes, dtype=object)[res.predictions],
            "depth": res.depth,
            "strategy": res.strategy,
        }
    )
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json", ".parquet"):
        raise ValueError(f"unknown output type {suffix!r}: use .csv, .jsonl or .parquet")
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True)
    names = pol.model_names or list(st.names)
    costs = _costs(args.costs, tuple(names), pol.costs)
    lines = [f"labeled {len(df)} items -> {out}"]
    if costs is not None:
        cs = summarize_cost(res.called, _item_costs(costs, len(df), tokens))
        lines.append(f"cost {cs.total:g} ({cs.relative:.2f}x the cheapest model alone)")
    lines.append(
        "share of items reaching each model: "
        + ", ".join(f"{n} {x:.0%}" for n, x in zip(names, res.called.mean(axis=0), strict=True))
    )
    if st.labels is not None:
        lines.append(f"accuracy {np.mean(res.predictions == st.labels):.4f}")
    console.print("\n".join(lines))
    return 0


def run_report(args: argparse.Namespace) -> int:

    from calibkit.ensemble import CascadePolicy
    from calibkit.ensemble.report import (
        baseline_rows,
        evaluate_predictions,
        format_table,
        frontier_plot,
    )

    pol = CascadePolicy.load(args.policy)
    st, tokens = _load_stack(args.scores, None)
    if st.labels is None:
        raise ValueError("a report needs labeled Scores files")
    names = list(pol.model_names or st.names)
    costs = _costs(args.costs, tuple(names), pol.costs)
    if costs is None:
        raise ValueError("no costs: pass --costs or train the policy with --costs")
    cm = _item_costs(costs, len(st.labels), tokens)
    kw: dict[str, Any] = {"average": args.average, "pos_label": args.pos_label}
    rows = []
    variants: list[tuple[str, Any, Any]] = []
    if args.uncal_scores or args.uncal_policy:
        if not (args.uncal_scores and args.uncal_policy):
            raise ValueError("--uncal-policy and --uncal-scores go together")
        ust, _ = _load_stack(args.uncal_scores, None)
        if not np.array_equal(ust.labels, st.labels) or [str(i) for i in ust.ids] != [
            str(i) for i in st.ids
        ]:
            raise ValueError("uncalibrated and calibrated scores must cover the same labeled items")
        variants.append((" (uncal.)", CascadePolicy.load(args.uncal_policy), ust))
    variants.append((" (cal.)" if variants else "", pol, st))
    for i, (tag, _, s) in enumerate(variants):
        rows += baseline_rows(s.probs, s.labels, cm, names, tag=tag, singles=(i == 0), **kw)
    for tag, p, s in variants:
        res = p.cascade(s.probs)
        rows.append(
            evaluate_predictions(
                f"Cascading{tag}",
                s.labels,
                res.predictions,
                res.called,
                cm,
                n_classes=len(s.classes),
                **kw,
            )
        )
    table = format_table(rows, names)
    print(table)
    if args.out:
        atomic_write_text(Path(args.out), table + "\n")
    if args.json_out:
        atomic_write_text(
            Path(args.json_out), json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
        )
    if args.plot:
        atomic_savefig(frontier_plot(rows), Path(args.plot))
    return 0
