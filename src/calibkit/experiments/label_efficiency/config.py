"""Settings of the label-efficiency study (:class:`StudyConfig`, YAML/JSON config files)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from calibkit.selection.in_task import STRATEGIES
from calibkit.selection.out_of_task import METHOD_ALIASES

__all__ = [
    "OOT_SCENARIOS",
    "SCREEN_MODES",
    "UNCAL",
    "StudyConfig",
    "load_config",
    "parse_setting",
]

OOT_SCENARIOS = ("ALL-OOT", "SIM-OOT")
UNCAL = "uncalibrated"
#: what the signal screen does: ``drop`` tasks that fail it, only ``report`` it, or ``off``
SCREEN_MODES = ("drop", "report", "off")
#: a labeler name becomes a folder name: letters, digits, ``-``, ``_`` and ``.``
_LABELER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: the few-shot demo draw shows at most 2 examples per class
MAX_SHOTS_PER_CLASS = 2


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
    #: labelers: name -> ``{"model": spec, "shots": n}`` (n in-context examples drawn, seeded,
    #: from the task's dataset outside its items); when set it replaces ``models`` (each model
    #: spec of ``models`` is the zero-shot labeler of the same name)
    labelers: dict[str, dict[str, Any]] | None = None
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
    #: the signal screen (AUROC of the class margin vs the label, with a CI) of every task and
    #: labeler: ``mode`` drop | report | off; a task is kept where the CI's lower end > 0.5;
    #: ``alpha`` (1 - coverage), ``n_boot`` (bootstrap resamples of multi-class tasks),
    #: ``table`` (an extra path for the Markdown screen table; null: only output_dir/screen.md)
    screen: dict[str, Any] = field(
        default_factory=lambda: {"mode": "report", "alpha": 0.05, "n_boot": 1000, "table": None}
    )

    def labeler_specs(self) -> dict[str, dict[str, Any]]:
        """Labelers by name -> ``{"model": spec, "shots": n}`` (``models``: zero-shot each)."""
        if self.labelers:
            return {k: dict(v) for k, v in self.labelers.items()}
        return {m: {"model": m, "shots": 0} for m in self.models}

    def _validate_labelers(self) -> None:
        if self.labelers is None:
            return
        if not isinstance(self.labelers, dict) or not self.labelers:
            raise ValueError("config 'labelers' must be a non-empty mapping name -> {model, shots}")
        out: dict[str, dict[str, Any]] = {}
        for name, spec in self.labelers.items():
            if not isinstance(name, str) or not _LABELER_NAME.match(name):
                raise ValueError(
                    f"config 'labelers': name {name!r} must be letters, digits, '-', '_' or '.'"
                )
            if not isinstance(spec, dict):
                raise ValueError(f"config 'labelers.{name}' must be a mapping {{model, shots}}")
            extra = sorted(set(spec) - {"model", "shots"})
            if extra:
                raise ValueError(f"config 'labelers.{name}': unknown keys {extra} (model, shots)")
            model = spec.get("model")
            if not isinstance(model, str) or not model.strip():
                raise ValueError(f"config 'labelers.{name}.model' must be a model spec string")
            shots = spec.get("shots", 0)
            if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
                raise ValueError(
                    f"config 'labelers.{name}.shots' must be an int >= 0; got {shots!r}"
                )
            out[name] = {"model": model.strip(), "shots": int(shots)}
        self.labelers = out

    def _validate_screen(self) -> None:
        sc = self.screen
        if sc.get("mode") not in SCREEN_MODES:
            raise ValueError(
                f"config 'screen.mode' must be one of {list(SCREEN_MODES)}; got {sc.get('mode')!r}"
            )
        if not 0.0 < float(sc.get("alpha", 0.05)) < 1.0:
            raise ValueError(f"config 'screen.alpha' must lie in (0, 1); got {sc.get('alpha')}")
        n_boot = sc.get("n_boot", 1000)
        if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
            raise ValueError(f"config 'screen.n_boot' must be an int >= 1; got {n_boot!r}")

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
        if not self.models and not self.labelers:
            raise ValueError("config 'models' is empty")
        self._validate_labelers()
        self._validate_screen()
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
    if overrides.get("models") is not None and overrides.get("labelers") is None:
        raw["labelers"] = None  # models given on the command line replace the file's labelers
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
