"""``calibkit cascade train|apply|report``: the cost-aware cascade of LLM labelers (paper 001).

Each model's scores are one scored table: a calibkit Scores file (``calibkit score`` output,
calibrated with ``calibkit apply`` if wanted) or any table that ``calibkit evaluate`` reads
(``logit_<class>`` or ``prob_<class>`` columns, labels as class names or 0-based indices),
aligned by item id; pass them cheapest model first. Every input, option and output path is
checked before the search starts or anything is written.

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

from calibkit.cli._args import check_not_same_file, check_output_file, esc
from calibkit.ensemble._io import atomic_path, atomic_savefig, atomic_write_text

__all__ = ["add_parser", "run_apply", "run_report", "run_train"]

#: largest policy table (``n_bins ** n_models`` cells) that ``cascade train`` builds
MAX_CASCADE_CELLS = 1_000_000

_LABEL_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def _load_one(path: str) -> Any:
    """One model's scores; errors name the file, the column and the row."""
    from calibkit.io import read_scores

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"scores file {p} is a folder")
    if not p.is_file():
        raise FileNotFoundError(f"scores file {p} not found")
    return read_scores(p)


def _load_stack(paths: list[str], names: str | None) -> Any:
    from calibkit.ensemble import stack_scores

    if len(paths) < 1:
        raise ValueError("give one Scores file per model")
    scores = [_load_one(p) for p in paths]
    name_list = None
    if names:
        name_list = [n.strip() for n in names.split(",")]
        if len(name_list) != len(paths) or not all(name_list):
            raise ValueError(
                f"--names gives {len(name_list)} name(s) for {len(paths)} scores files"
            )
    elif all(not s.meta.get("model") and not s.meta.get("name") for s in scores):
        name_list = [Path(p).stem for p in paths]
    st = stack_scores(scores, names=name_list, sources=paths)
    # per-item prompt-token counts (``meta["prompt_tokens"]``), for per-token prices
    tokens = None
    if all(len(s.meta.get("prompt_tokens") or []) == len(s) for s in scores):
        key0 = [str(i) for i in st.ids]
        cols = []
        for path, s in zip(paths, scores, strict=True):
            by_id = dict(zip((str(i) for i in s.ids), s.meta["prompt_tokens"], strict=True))
            try:
                col = np.asarray([float(by_id[i]) for i in key0], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{path}: meta['prompt_tokens'] holds a non-number") from None
            if not np.all(np.isfinite(col)) or (col < 0).any():
                raise ValueError(f"{path}: meta['prompt_tokens'] must be finite counts >= 0")
            cols.append(col)
        tokens = np.stack(cols, axis=1)
    return st, tokens


def _item_costs(costs: Any, n: int, tokens: Any, n_models: int | None = None) -> Any:
    """(n, K) per-item costs; per-token prices use the files' ``meta["prompt_tokens"]``."""
    from calibkit.ensemble import cost_matrix

    if n_models is not None and len(costs) != n_models:
        raise ValueError(f"--costs gives {len(costs)} cost(s) for {n_models} models")
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
        try:
            obj = json.loads(p.read_text())
            groups = obj["edges"] if isinstance(obj, dict) else obj
            return [[float(x) for x in e] for e in groups]
        except json.JSONDecodeError as exc:
            raise ValueError(f"edges file {p} is not valid JSON: {exc}") from None
        except KeyError:
            raise ValueError(f"edges file {p}: missing field 'edges'") from None
        except (TypeError, ValueError):
            raise ValueError(
                f"edges file {p}: expected a list of lists of numbers (one list per model)"
            ) from None
    try:
        return [[float(x) for x in part.split(",") if x.strip()] for part in text.split(";")]
    except ValueError:
        raise ValueError(
            f"--edges {text!r}: expected 'e,e;e,e' (one group per model) or a .json file"
        ) from None


def _costs(spec: str | None, names: tuple[str, ...], policy_costs: Any = None) -> Any:
    from calibkit.ensemble import parse_costs

    if spec:
        try:
            return parse_costs(spec, names=list(names))
        except json.JSONDecodeError as exc:
            raise ValueError(f"costs file {spec} is not valid JSON: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"--costs {spec}: malformed ({type(exc).__name__}: {exc})") from None
        except ValueError as exc:
            raise ValueError(f"--costs {spec}: {exc}") from None
    if policy_costs is not None:
        return policy_costs
    return None


def _load_policy(path: str) -> Any:
    """A trained policy; a malformed file is a ``ValueError`` naming the file and the field."""
    from calibkit.ensemble import CascadePolicy

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"policy {p} is a folder, not a policy JSON file")
    try:
        return CascadePolicy.load(p)
    except FileNotFoundError:
        raise
    except KeyError as exc:
        raise ValueError(f"policy file {p}: missing field {exc}") from None
    except (TypeError, AttributeError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"policy file {p}: malformed ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        if str(p) in str(exc):
            raise
        raise ValueError(f"policy file {p}: {exc}") from None


def _check_outputs(outputs: list[tuple[str, str | None]], inputs: list[tuple[str, str]]) -> None:
    """Every output path: not an input, not a folder, writable (before any work)."""
    for option, path in outputs:
        if not path:
            continue
        check_not_same_file(path, inputs, option=option)
        check_output_file(path, option)


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
    inputs = [("scores file", p) for p in args.scores]
    _check_outputs([("--out", args.out)], inputs)
    st, tokens = _load_stack(args.scores, args.names)
    if st.labels is None:
        raise ValueError("training a cascade needs labeled Scores files")
    costs = _costs(args.costs, st.names)
    if costs is not None:
        # the policy keeps one mean cost per model (per-token prices averaged over these items)
        costs = _item_costs(costs, len(st.labels), tokens, st.n_models).mean(axis=0).tolist()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    out = Path(args.out)
    if not args.edges:
        if args.n_bins < 1 or args.n_bins**st.n_models > MAX_CASCADE_CELLS:
            raise ValueError(
                f"--n-bins {args.n_bins} with {st.n_models} models gives a table of "
                f"{args.n_bins}^{st.n_models} cells; the limit is {MAX_CASCADE_CELLS:,} "
                "(use fewer bins)"
            )
        if args.trials < 1 or args.splits < 1:
            raise ValueError("--trials and --splits must be >= 1")
        if not 0.0 < args.test_size < 1.0:
            raise ValueError(f"--test-size must be in (0, 1); got {args.test_size}")
    if args.edges:
        pol = CascadePolicy(
            edges=_edges_arg(args.edges),
            strategies=strategies,
            costs=costs,
            cost_penalty=args.cost_penalty,
            model_names=list(st.names),
        ).fit(st.probs, st.labels)
        pol.save(out)
        console.print(f"trained on {len(st.labels)} items with fixed edges -> {esc(out)}")
        return 0
    storage = args.storage or f"sqlite:///{out.with_suffix('.optuna.db')}"
    if storage.startswith("journal:"):
        check_output_file(storage[len("journal:") :], "--storage journal")
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
        f"the cheapest model's cost; trained on all {len(st.labels)} items -> {esc(out)}\n"
        f"share of items reaching each model (training set): {esc(share)}"
    )
    return 0


def _share(policy: Any, probs: Any) -> Any:
    return policy.cascade(probs).called.mean(axis=0)


def run_apply(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.console import Console

    from calibkit.ensemble import summarize_cost

    console = Console(stderr=True)
    # every check before the labels are written
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in _LABEL_SUFFIXES:
        raise ValueError(
            f"--out {out}: unknown output type {suffix!r}; use .csv, .jsonl or .parquet"
        )
    inputs = [("policy file", args.policy)] + [("scores file", p) for p in args.scores]
    _check_outputs([("--out", args.out)], inputs)
    pol = _load_policy(args.policy)
    st, tokens = _load_stack(args.scores, None)
    if st.n_models != pol.n_models_:
        raise ValueError(
            f"the policy {args.policy} has {pol.n_models_} models but {st.n_models} scores files "
            "were given"
        )
    if pol.n_classes_ is not None and len(st.classes) != int(pol.n_classes_):
        raise ValueError(
            f"the policy {args.policy} was trained on {pol.n_classes_} classes but the scores "
            f"files have {len(st.classes)} ({', '.join(st.classes)})"
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
    names = list(pol.model_names or st.names)
    if len(names) != st.n_models:
        raise ValueError(
            f"the policy {args.policy} names {len(names)} models for {st.n_models} scores files"
        )
    costs = _costs(args.costs, tuple(names), pol.costs)
    lines = [f"labeled {len(df)} items -> {esc(out)}"]
    if costs is not None:
        cs = summarize_cost(res.called, _item_costs(costs, len(df), tokens, st.n_models))
        lines.append(f"cost {cs.total:g} ({cs.relative:.2f}x the cheapest model alone)")
    lines.append(
        "share of items reaching each model: "
        + esc(
            ", ".join(f"{n} {x:.0%}" for n, x in zip(names, res.called.mean(axis=0), strict=True))
        )
    )
    if st.labels is not None:
        lines.append(f"accuracy {np.mean(res.predictions == st.labels):.4f}")
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True)
    console.print("\n".join(lines))
    return 0


def run_report(args: argparse.Namespace) -> int:

    from calibkit.ensemble.report import (
        baseline_rows,
        evaluate_predictions,
        format_table,
        frontier_plot,
    )

    inputs = [("policy file", args.policy)] + [("scores file", p) for p in args.scores]
    if args.uncal_policy:
        inputs.append(("--uncal-policy file", args.uncal_policy))
    inputs += [("--uncal-scores file", p) for p in args.uncal_scores or []]
    if args.plot:
        from calibkit.cli._args import check_figure_path

        check_figure_path(args.plot, "--plot")
    outs = [("--out", args.out), ("--json", args.json_out), ("--plot", args.plot)]
    given = [p for _, p in outs if p]
    for i, a in enumerate(given):
        for b in given[i + 1 :]:
            check_not_same_file(a, [("other output", b)])
    _check_outputs(outs, inputs)
    if args.uncal_scores or args.uncal_policy:
        if not (args.uncal_scores and args.uncal_policy):
            raise ValueError("--uncal-policy and --uncal-scores go together")
    pol = _load_policy(args.policy)
    st, tokens = _load_stack(args.scores, None)
    if st.labels is None:
        raise ValueError("a report needs labeled Scores files")
    if st.n_models != pol.n_models_:
        raise ValueError(
            f"the policy {args.policy} has {pol.n_models_} models but {st.n_models} scores files "
            "were given"
        )
    names = list(pol.model_names or st.names)
    costs = _costs(args.costs, tuple(names), pol.costs)
    if costs is None:
        raise ValueError("no costs: pass --costs or train the policy with --costs")
    cm = _item_costs(costs, len(st.labels), tokens, st.n_models)
    kw: dict[str, Any] = {"average": args.average, "pos_label": args.pos_label}
    rows = []
    variants: list[tuple[str, Any, Any]] = []
    if args.uncal_scores and args.uncal_policy:
        ust, _ = _load_stack(args.uncal_scores, None)
        if not np.array_equal(ust.labels, st.labels) or [str(i) for i in ust.ids] != [
            str(i) for i in st.ids
        ]:
            raise ValueError("uncalibrated and calibrated scores must cover the same labeled items")
        variants.append((" (uncal.)", _load_policy(args.uncal_policy), ust))
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
    fig = frontier_plot(rows) if args.plot else None
    print(table)
    if args.out:
        atomic_write_text(Path(args.out), table + "\n")
    if args.json_out:
        atomic_write_text(
            Path(args.json_out), json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
        )
    if fig is not None:
        atomic_savefig(fig, Path(args.plot))
    return 0
