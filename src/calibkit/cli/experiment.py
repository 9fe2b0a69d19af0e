"""``calibkit experiment NAME ...``: dispatch to ``calibkit.experiments.<name>``.

Each experiment module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# experiment name on the command line -> module
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "label-efficiency": (
        "calibkit.experiments.label_efficiency",
        "paper 001 Tables 1, 2, 5: ACE of ST/SV calibration under U/SE/IE/OOT example selection",
    ),
    "cascade": (
        "calibkit.experiments.cascade",
        "paper 001 Table 3: weighted vote vs cost-aware cascade of LLM labelers",
    ),
    "fill-gaps": (
        "calibkit.experiments.fill_gaps",
        "paper 000 Table 4: Synthesis / Synthesis+ vs isotonic, Platt, temperature, MC dropout",
    ),
    "confidence-methods": (
        "calibkit.experiments.confidence_methods",
        "issue #14: confidence estimators (logits, P(True), verbalized, self-consistency), "
        "raw and calibrated, with their cost",
    ),
    "finetune": (
        "calibkit.experiments.finetune",
        "paper 002 Tables 2 and 4: CFT / RCFT vs temperature scaling and label smoothing",
    ),
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("experiment", help="run a paper-reproduction experiment")
    sub = p.add_subparsers(dest="experiment", metavar="NAME", required=True)
    for name, (module, help_) in EXPERIMENTS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        sp = sub.add_parser(
            name, help=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
