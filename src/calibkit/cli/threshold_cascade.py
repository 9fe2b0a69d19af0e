"""``calibkit threshold cascade`` and ``apply`` of a certified cascade (see :mod:`calibkit.cli.threshold`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.cli.evaluate import _json_value
from calibkit.cli.threshold import _method, _need_max_error


def _load_stack(files: list[str]) -> Any:
    from calibkit.ensemble import stack_scores
    from calibkit.scores import Scores

    scores = []
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"scores file {f} not found")
        scores.append(Scores.load(f))
    names = None
    if all(not s.meta.get("model") and not s.meta.get("name") for s in scores):
        names = [Path(f).stem for f in files]
    return stack_scores(scores, names=names)


def _cascade_costs(args: argparse.Namespace, policy: Any) -> Any:
    if args.costs:
        from calibkit.ensemble import parse_costs

        names = list(policy.model_names or [f"model_{k}" for k in range(policy.n_models_)])
        return parse_costs(args.costs, names=names)
    return policy.costs


def _run_cascade(args: argparse.Namespace, policy_path: str, files: list[str]) -> int:
    from calibkit.decisions import certify_cascade, compare_cascades
    from calibkit.ensemble import CascadePolicy

    eps = _need_max_error(args)
    pol = CascadePolicy.load(policy_path)
    st = _load_stack(files)
    if st.n_models != pol.n_models_:
        raise ValueError(
            f"the policy has {pol.n_models_} models but {st.n_models} files were given"
        )
    if st.labels is None:
        raise ValueError("certifying a cascade needs labelled Scores files")
    stages = None
    if args.stages:
        try:
            stages = [int(s) for s in args.stages.split(",") if s.strip()]
        except ValueError:
            raise ValueError(
                f"--stages expects comma-separated stage numbers; got {args.stages!r}"
            ) from None
    cert = certify_cascade(
        pol,
        st.probs,
        st.labels,
        max_error=eps,
        delta=args.delta,
        stages=stages,
        method=_method(args),
        mode=args.mode,
    )
    out = cert.save(args.output) if args.output else None
    costs = _cascade_costs(args, pol)
    names = list(pol.model_names or st.names)
    comps = {
        "calibration": compare_cascades(
            cert, st.probs, st.labels, costs=costs, average=args.average, pos_label=args.pos_label
        )
    }
    if args.eval_files:
        ev = _load_stack(args.eval_files)
        if ev.labels is None:
            raise ValueError("--eval files must be labelled")
        comps["held-out"] = compare_cascades(
            cert, ev.probs, ev.labels, costs=costs, average=args.average, pos_label=args.pos_label
        )
    summary = {
        "policy": str(policy_path),
        "certificate": {k: v for k, v in cert.to_dict().items() if k != "policy"},
        "comparison": {k: c.rows for k, c in comps.items()},
        "output": None if out is None else str(out),
    }
    if args.json:
        print(json.dumps(json.loads(json.dumps(summary, default=_json_value)), indent=2))
        return 0
    from rich.console import Console

    con = Console()
    con.print(f"guarantee: {cert.guarantee()}")
    for s in cert.stages:
        thr = (
            "never"
            if math.isinf(s.threshold)
            else ("policy's rule" if not s.certified else f"support >= {s.threshold:.4g}")
        )
        err = "-" if s.error is None else f"{s.error:.4f}"
        bound = "" if s.error_upper is None or not s.certified else f" (bound {s.error_upper:.4f})"
        con.print(
            f"stage {s.stage} ({s.model}): {thr}; labels {s.n_accepted} of {s.n_candidates} "
            f"candidates ({s.n_reaching} reached it), error {err}{bound}"
        )
    for k, c in comps.items():
        con.print(f"\n[bold]{k}[/]")
        con.print(c.table(names))
    if out is not None:
        con.print(f"certified cascade: [cyan]{out}[/]")
    return 0


def _apply_cascade(args: argparse.Namespace, p: Path, d: dict[str, Any], files: list[str]) -> int:
    import pandas as pd

    from calibkit.decisions import CertifiedCascade
    from calibkit.io import write_table

    cert = CertifiedCascade.from_dict(d, source=str(p))
    st = _load_stack(files)
    if st.n_models != cert.policy.n_models_:
        raise ValueError(
            f"the cascade has {cert.policy.n_models_} models but {len(files)} files were given"
        )
    res = cert.cascade(st.probs)
    lab = np.where(
        res.predictions >= 0,
        np.asarray(st.classes, dtype=object)[np.maximum(res.predictions, 0)],
        "",
    )
    df = pd.DataFrame(
        {
            "id": st.ids,
            "prediction": lab,
            "decision": np.where(res.review, "review", "auto"),
            "stage": res.exit_stage,
            "depth": res.depth,
            "support": res.support,
        }
    )
    written = write_table(df, args.output)
    if args.review_out:
        write_table(df[res.review], args.review_out)
    summary: dict[str, Any] = {
        "output": str(written),
        "n": len(df),
        "n_review": int(res.review.sum()),
        "share_by_stage": [
            float(np.mean(res.exit_stage == k)) for k in range(1, cert.policy.n_models_ + 1)
        ],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.console import Console

    Console().print(
        f"labeled {len(df) - summary['n_review']}/{len(df)} items ({summary['n_review']} to review) "
        f"-> [cyan]{written}[/]; share labeled per stage: "
        + ", ".join(f"{x:.1%}" for x in summary["share_by_stage"])
    )
    return 0
