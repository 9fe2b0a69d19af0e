"""Settings of the label-efficiency study (:class:`StudyConfig`, YAML/JSON config files)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from calibkit.selection.in_task import STRATEGIES
from calibkit.selection.out_of_task import METHOD_ALIASES

__all__ = ["OOT_SCENARIOS", "UNCAL", "StudyConfig", "load_config", "parse_setting"]

OOT_SCENARIOS = ("ALL-OOT", "SIM-OOT")
UNCAL = "uncalibrated"


@dataclass
class StudyConfig:
    """Settings of the study; every field can be set in the YAML/JSON config file."""

    output_dir: str = "calibkit-out/label_efficiency"
    scores_dir: str = "calibkit-out/label_efficiency/scores"
    data_dir: str | None = None
    cache_dir: str | None = None
    #: model specs (:func:`calibkit.scoring.backends.make_backend`): smollm2, hf:<id>,
    #: openai:<base_url>::<model>?api_key_env=NAME ...
    models: list[str] = field(default_factory=lambda: ["smollm2"])
    #: built-in task names and/or task files (.yaml/.yml/.json, see calibkit.tasks), or "all"
    tasks: list[str] | str = "all"
    n_per_task: int = 400
    task_seed: int = 0
    max_chars: int = 200
    batch_size: int = 16
    eval_fraction: float = 0.5
    split_seed: int = 0
    strategies: list[str] = field(default_factory=lambda: ["U", "SE", "IE"])
    methods: list[str] = field(default_factory=lambda: ["ST", "SV"])
    shots: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    seeds: int = 10
    ace_bins: int = 10
    surrogate: str = "auto"
    oot_form: str = "auto"
    sim_oot: dict[str, Any] = field(
        default_factory=lambda: {
            "n_clusters": None,
            "method": "agglomerative",
            "min_sources": 1,
            "embedding_model": None,
            "description_weight": 0.5,
            "max_texts": 64,
        }
    )
    se: dict[str, Any] = field(
        default_factory=lambda: {"n_strata": 5, "strata": "uniform", "allocation": "equal"}
    )
    ie: dict[str, Any] = field(default_factory=lambda: {"floor": 0.0})

    def validate(self) -> StudyConfig:
        """Check values; raise ValueError naming the bad key."""
        bad_s = [s for s in self.strategies if s.upper() not in STRATEGIES]
        if bad_s:
            raise ValueError(
                f"config 'strategies': unknown {bad_s}; choose from {sorted(STRATEGIES)}"
            )
        self.strategies = [s.upper() for s in self.strategies]
        bad_m = [m for m in self.methods if m.upper() not in METHOD_ALIASES]
        if bad_m:
            raise ValueError(
                f"config 'methods': unknown {bad_m}; choose from {sorted(METHOD_ALIASES)}"
            )
        self.methods = [m.upper() for m in self.methods]
        if not self.shots or any(int(s) < 1 for s in self.shots):
            raise ValueError(
                f"config 'shots' must be a non-empty list of ints >= 1; got {self.shots}"
            )
        self.shots = sorted(int(s) for s in self.shots)
        if int(self.seeds) < 1:
            raise ValueError(f"config 'seeds' must be >= 1; got {self.seeds}")
        if not 0.0 < float(self.eval_fraction) < 1.0:
            raise ValueError(f"config 'eval_fraction' must lie in (0, 1); got {self.eval_fraction}")
        if int(self.ace_bins) < 1:
            raise ValueError(f"config 'ace_bins' must be >= 1; got {self.ace_bins}")
        if not self.models:
            raise ValueError("config 'models' is empty")
        if self.surrogate != "auto":
            parse_setting(self.surrogate)
        if self.oot_form not in ("auto", "classes", "top_label"):
            raise ValueError(
                f"config 'oot_form' must be auto, classes or top_label; got {self.oot_form!r}"
            )
        return self


def parse_setting(text: str) -> tuple[str, str]:
    """``"SIM-OOT/ST"`` -> ``("SIM-OOT", "ST")``."""
    parts = str(text).upper().split("/")
    if len(parts) != 2 or parts[0] not in OOT_SCENARIOS or parts[1] not in METHOD_ALIASES:
        raise ValueError(
            f"config 'surrogate' must be 'auto' or '<ALL-OOT|SIM-OOT>/<ST|SV>'; got {text!r}"
        )
    return parts[0], parts[1]


def _relative_to(task: Any, folder: Path) -> Any:
    from calibkit.tasks import is_task_file

    if isinstance(task, str) and is_task_file(task) and not Path(task).expanduser().is_absolute():
        return str(folder / task)
    return task


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> StudyConfig:
    """Read a YAML or JSON config onto the defaults of :class:`StudyConfig`.

    Unknown keys raise ``ValueError``; nested dicts (``sim_oot``, ``se``, ``ie``) are merged key by
    key; ``overrides`` (not ``None``) win over the file. Task files listed under ``tasks`` in the
    file are relative to the file's folder.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found")
        text = p.read_text()
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        elif p.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raise ValueError(f"config {p.name}: use a .yaml, .yml or .json file")
        if not isinstance(raw, dict):
            raise ValueError(f"config {p} must hold a mapping of settings")
        if isinstance(raw.get("tasks"), list):
            raw["tasks"] = [_relative_to(t, p.parent) for t in raw["tasks"]]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    cfg = StudyConfig()
    known = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
    for k, v in raw.items():
        cur = getattr(cfg, k)
        if isinstance(cur, dict):
            if not isinstance(v, dict):
                raise ValueError(f"config {k!r} must be a mapping")
            extra = sorted(set(v) - set(cur))
            if extra:
                raise ValueError(f"unknown keys {extra} in config {k!r}; known: {sorted(cur)}")
            cur.update(v)
        else:
            setattr(cfg, k, v)
    return cfg.validate()
