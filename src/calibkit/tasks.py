"""One task model for every runner: :class:`TaskSpec` and where its data comes from.

A task is a text classification problem as an LLM sees it: the class names (in label-index
order), what each class means, a few example texts per class, an instruction or a (yes/no)
question, and the labeled data (:class:`DataSource`: a built-in dataset or the user's own CSV /
TSV / JSONL / JSON / Parquet file, its text and label columns, and how its labels map to the
classes). The scorers (prompts), the selection study (``experiment label-efficiency``), the
cascade (``experiment cascade``) and the synthetic-data pipeline (``experiment fill-gaps``) all
read this one type; each experiment keeps its paper's built-in tasks as ``TaskSpec`` values.

A task file is YAML (or JSON)::

    name: trec_number
    question: Does this question ask for a number, such as a date, a count or an amount?
    text_kind: Question
    classes: [no, yes]              # the default for a yes/no task
    descriptions:
      yes: a question whose answer is a number, a date, a count or an amount
      no: a question whose answer is anything else
    examples:
      yes: ["How many people live in Chile?"]
      no: ["Who wrote Hamlet?"]
    data:
      path: trec.csv                # relative to this file
      text_column: text
      label_column: label
      positive: [NUM]               # data labels that mean "yes"; every other label is "no"

A multi-class task lists its classes and, where the file's labels are not the class names,
``data.class_labels`` (the file's label of each class, in class order). :func:`load_task` reads
and validates a file (errors name the file and the field); :func:`save_task` writes one;
:func:`load_task_frame` reads a task's labeled rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from calibkit.scoring.prompts import PromptTemplate

__all__ = [
    "DataSource",
    "TaskSpec",
    "is_task_file",
    "load_task",
    "load_task_frame",
    "resolve_task",
    "save_task",
]

_TASK_SUFFIXES = (".yaml", ".yml", ".json")
_UNKNOWN = ("error", "drop")


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"field {what!r} must be a list of strings; got {value!r}")
    out = tuple(str(v).strip() for v in value)
    if any(not v for v in out):
        raise ValueError(f"field {what!r} has an empty entry")
    return out


@dataclass(frozen=True)
class DataSource:
    """Where a task's labeled texts come from and how their labels map to the classes.

    Attributes
    ----------
    dataset : str or None
        A built-in dataset (:func:`calibkit.datasets.load_classification`).
    path : str or None
        A CSV / TSV / JSONL / JSON / Parquet file (exactly one of ``dataset`` and ``path``).
    text_column, label_column : str
        Columns of the text and of the label.
    split_column : str
        Column naming each row's split (``train``, ``test``...); optional in the file.
    class_labels : tuple of str
        The data label of each class, in class order (default: the class names).
    positive : tuple of str
        Yes/no tasks: the data labels that mean ``classes[1]``; every other label is
        ``classes[0]`` (restricted to ``negatives`` when given).
    negatives : tuple of str
        Yes/no tasks: the only data labels allowed as ``classes[0]`` (others are left out).
    unknown_labels : {"error", "drop"}
        A row whose label is no class's: an error naming the row (default), or left out (to
        take a few classes out of a bigger label set).
    positive_fraction : float
        Share of ``classes[1]`` items when a balanced subsample of a yes/no task is drawn.
    eval_split, demo_split : str or None
        Splits to evaluate on and to draw in-context examples from (``None``: every row).
    """

    dataset: str | None = None
    path: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    split_column: str = "split"
    class_labels: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    unknown_labels: str = "error"
    positive_fraction: float = 0.5
    eval_split: str | None = None
    demo_split: str | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("field 'data': give exactly one of 'dataset' and 'path'")
        for key in ("class_labels", "positive", "negatives"):
            object.__setattr__(self, key, _strings(getattr(self, key), f"data.{key}"))
        for key in ("text_column", "label_column", "split_column"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v:
                raise ValueError(f"field 'data.{key}' must be a column name; got {v!r}")
        if self.unknown_labels not in _UNKNOWN:
            raise ValueError(
                f"field 'data.unknown_labels' must be 'error' or 'drop'; got {self.unknown_labels!r}"
            )
        frac = self.positive_fraction
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac < 1:
            raise ValueError(f"field 'data.positive_fraction' must lie in (0, 1); got {frac!r}")
        if self.negatives and not self.positive:
            raise ValueError("field 'data.negatives' needs 'data.positive'")
        if self.positive and self.class_labels:
            raise ValueError("fields 'data.positive' and 'data.class_labels' exclude each other")

    @property
    def source_name(self) -> str:
        """The dataset name, or the file's stem (used in item ids)."""
        return self.dataset if self.dataset is not None else Path(str(self.path)).stem


@dataclass(frozen=True)
class TaskSpec:
    """A text classification task as the LLM sees it.

    Attributes
    ----------
    name : str
    classes : tuple of str
        Class names (the answer words) in label-index order; for a yes/no task ``("no",
        "yes")`` (``classes[1]`` is the positive class, ``P(y = 1)``).
    descriptions : mapping class -> str
        What each class means (appendix C of paper 000: what follows "which is").
    examples : mapping class -> tuple of str
        Example texts per class (three in paper 000).
    instruction : str or None
        A task instruction; ``{classes}`` is replaced by the class list.
    question : str or None
        The question put to the LLM (a yes/no question for a yes/no task).
    text_kind : str
        What a text is ("Review", "Question" ...), used in prompts.
    data : DataSource or None
        The labeled data (``None`` for a prompt-only task).
    """

    name: str
    classes: tuple[str, ...] = ("no", "yes")
    descriptions: Mapping[str, str] = field(default_factory=dict)
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    instruction: str | None = None
    question: str | None = None
    text_kind: str = "Text"
    data: DataSource | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"field 'name' must be a non-empty string; got {self.name!r}")
        if isinstance(self.classes, str) or not isinstance(self.classes, Sequence):
            raise ValueError(f"field 'classes' must be a list of names; got {self.classes!r}")
        cls = tuple(str(c) for c in self.classes)
        if len(cls) < 2 or len(set(cls)) != len(cls) or not all(c.strip() for c in cls):
            raise ValueError(f"field 'classes' must be >= 2 distinct names, got {cls}")
        object.__setattr__(self, "classes", cls)
        for what, mapping in (("descriptions", self.descriptions), ("examples", self.examples)):
            if not isinstance(mapping, Mapping):
                raise ValueError(f"field {what!r} must map class names to values")
            extra = sorted(str(k) for k in set(mapping) - set(cls))
            if extra:
                raise ValueError(f"{what} name unknown classes {extra}; classes are {list(cls)}")
        object.__setattr__(
            self, "descriptions", {str(k): str(v) for k, v in self.descriptions.items()}
        )
        object.__setattr__(
            self,
            "examples",
            {str(c): _strings(v, f"examples.{c}") for c, v in self.examples.items()},
        )
        d = self.data
        if d is not None:
            if d.positive and len(cls) != 2:
                raise ValueError(
                    f"field 'data.positive' needs 2 classes (no, yes); got {list(cls)}"
                )
            if d.class_labels and len(d.class_labels) != len(cls):
                raise ValueError(
                    f"field 'data.class_labels' has {len(d.class_labels)} labels for "
                    f"{len(cls)} classes"
                )
            if len(set(d.class_labels)) != len(d.class_labels):
                raise ValueError("field 'data.class_labels' repeats a label")

    # ------------------------------------------------------------------ prompts
    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    def instruction_text(self) -> str:
        """The instruction with ``{classes}`` filled in; by default "Classify the <kind> as one
        of: <classes>."."""
        return self.instruction_template().replace("{classes}", ", ".join(self.classes))

    def instruction_template(self) -> str:
        """The instruction with its ``{classes}`` placeholder (as
        :class:`~calibkit.scoring.PromptTemplate` takes it); a default when none is set."""
        if self.instruction is not None:
            return self.instruction
        return f"Classify the {self.text_kind.lower()} as one of: {{classes}}."

    def template(self, **kwargs: object) -> PromptTemplate:
        """The class descriptions and grouped examples (paper 000, appendix C) as a
        :class:`~calibkit.scoring.PromptTemplate`; ``kwargs`` override its other fields."""
        from calibkit.scoring.prompts import PromptTemplate

        examples = [(t, c) for c in self.classes for t in self.examples.get(c, ())]
        return PromptTemplate(
            label_descriptions=dict(self.descriptions),
            examples=examples,
            few_shot_style="grouped",
            **kwargs,  # type: ignore[arg-type]
        )

    def system_prompt(self) -> str:
        """Table 7's system prompt of paper 000: "Consider the task of classifying between the
        following classes (along with some examples): 1. <class>, which is <definition>. Some
        examples of utterances include: ..."."""
        return self.template().task_description(self.classes)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_data(
        cls,
        name: str,
        classes: Sequence[str],
        texts: Sequence[str],
        labels: ArrayLike,
        *,
        descriptions: Mapping[str, str] | None = None,
        n_examples: int = 3,
        seed: int = 0,
    ) -> TaskSpec:
        """A task whose examples are ``n_examples`` training texts per class drawn with ``seed``
        (for datasets without hand-written examples)."""
        return cls(name, tuple(classes), dict(descriptions or {})).with_examples_from(
            texts, labels, n_examples=n_examples, seed=seed
        )

    def with_examples_from(
        self, texts: Sequence[str], labels: ArrayLike, *, n_examples: int = 3, seed: int = 0
    ) -> TaskSpec:
        """A copy whose classes without examples get ``n_examples`` texts of that class drawn
        with ``seed`` from ``texts`` (``labels``: class indices)."""
        y = np.asarray(labels, dtype=np.int64)
        if len(texts) != y.shape[0]:
            raise ValueError(f"texts and labels differ in length: {len(texts)} vs {y.shape[0]}")
        rng = np.random.default_rng(seed)
        ex = dict(self.examples)
        for k, c in enumerate(self.classes):
            idx = np.flatnonzero(y == k)
            if idx.size == 0:
                raise ValueError(f"class {c!r} has no training text to use as an example")
            pick = rng.choice(idx, size=min(n_examples, idx.size), replace=False)
            if not ex.get(c):
                ex[c] = tuple(str(texts[i]) for i in sorted(pick))
        return replace(self, examples=ex)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, strings), the layout of a task file."""
        out: dict[str, Any] = {
            "name": self.name,
            "classes": list(self.classes),
            "descriptions": dict(self.descriptions),
            "examples": {c: list(v) for c, v in self.examples.items()},
            "instruction": self.instruction,
            "question": self.question,
            "text_kind": self.text_kind,
        }
        if self.data is not None:
            d = {f.name: getattr(self.data, f.name) for f in fields(DataSource)}
            out["data"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return out

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], *, where: str = "task", base_dir: Path | None = None
    ) -> TaskSpec:
        """Build and validate a task from :meth:`to_dict`-style data; errors start with
        ``where`` (e.g. the file name) and name the field. A relative ``data.path`` is taken
        relative to ``base_dir``."""
        try:
            return cls._from_dict(raw, base_dir)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    @classmethod
    def _from_dict(cls, raw: Mapping[str, Any], base_dir: Path | None) -> TaskSpec:
        if not isinstance(raw, Mapping):
            raise ValueError("a task must be a mapping of fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}; known fields: {sorted(known)}")
        kw = {k: v for k, v in raw.items() if v is not None}
        data = kw.pop("data", None)
        if data is not None:
            if not isinstance(data, Mapping):
                raise ValueError("field 'data' must be a mapping")
            dknown = {f.name for f in fields(DataSource)}
            bad = sorted(set(data) - dknown)
            if bad:
                raise ValueError(f"unknown field 'data.{bad[0]}'; known: {sorted(dknown)}")
            dkw = {k: v for k, v in data.items() if v is not None}
            if "path" in dkw:
                p = Path(str(dkw["path"])).expanduser()
                if not p.is_absolute() and base_dir is not None:
                    p = base_dir / p
                dkw["path"] = str(p)
            for key in ("class_labels", "positive", "negatives"):
                if key in dkw:
                    dkw[key] = _strings(dkw[key], f"data.{key}")
            kw["data"] = DataSource(**dkw)
        for key in ("name", "instruction", "question", "text_kind"):
            if key in kw and not isinstance(kw[key], str):
                raise ValueError(f"field {key!r} must be a string; got {kw[key]!r}")
        if "classes" in kw:
            kw["classes"] = _strings(kw["classes"], "classes")
        return cls(**kw)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the task as YAML (``.yaml`` / ``.yml``) or JSON (``.json``), atomically."""
        return save_task(self, path)


def is_task_file(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a task file (by its suffix) rather than a built-in task."""
    return Path(str(text)).suffix.lower() in _TASK_SUFFIXES


def _yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 booleans: only ``true`` / ``false`` are booleans, so
    ``classes: [no, yes]`` stays two class names (YAML 1.1 reads them as False / True)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return yaml.load(text, Loader=Loader)  # a SafeLoader subclass: no arbitrary objects


def load_task(path: str | os.PathLike[str]) -> TaskSpec:
    """Read and validate a task file (YAML or JSON); ``name`` defaults to the file's stem and a
    relative ``data.path`` is relative to the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"task file {p} not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raw = _yaml_load(text)
    except (ValueError, ImportError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"task file {p}: cannot parse ({e})") from None
    except Exception as e:  # yaml.YAMLError
        raise ValueError(f"task file {p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"task file {p}: must hold a mapping of fields")
    raw.setdefault("name", p.stem)
    return TaskSpec.from_dict(raw, where=f"task file {p}", base_dir=p.parent)


def save_task(spec: TaskSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` as YAML or JSON (by suffix), atomically."""
    from calibkit._atomic import atomic_write_text

    p = Path(path)
    d = spec.to_dict()
    if p.suffix.lower() == ".json":
        text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
    elif p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
    else:
        raise ValueError(f"{p}: a task file must be .yaml, .yml or .json")
    return atomic_write_text(p, text)


def resolve_task(
    name_or_path: str | os.PathLike[str] | TaskSpec, builtins: Mapping[str, TaskSpec]
) -> TaskSpec:
    """A built-in task by name, or a task file by path (by its ``.yaml/.yml/.json`` suffix)."""
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    if is_task_file(name_or_path):
        return load_task(name_or_path)
    name = str(name_or_path)
    if name not in builtins:
        raise ValueError(
            f"unknown task {name!r}; built-in tasks: {sorted(builtins)} (or give a task file: "
            "a .yaml / .yml / .json path)"
        )
    return builtins[name]


def load_task_frame(spec: TaskSpec, *, data_dir: str | os.PathLike[str] | None = None) -> Any:
    """The task's labeled rows as a DataFrame ``text, label, split, row, source_label``.

    ``label`` is the class index (int64) after the data source's mapping, ``row`` the row's
    position in the whole dataset / file (stable item ids), ``source_label`` the data label.
    Rows dropped by ``negatives`` or ``unknown_labels: drop`` are left out; a label that maps
    to no class (with ``unknown_labels: error``) raises an error naming the file and the row.
    """
    import pandas as pd

    from calibkit import datasets

    d = spec.data
    if d is None:
        raise ValueError(f"task {spec.name!r} has no data source (field 'data')")
    if d.dataset is not None:
        df = datasets.load_classification(d.dataset, data_dir=data_dir)
        where = f"dataset {d.dataset}"
        for col in (d.text_column, d.label_column):
            if col not in df.columns:
                raise ValueError(f"{where} has no column {col!r}; columns: {list(df.columns)}")
        split = df[d.split_column] if d.split_column in df.columns else "all"
        frame = pd.DataFrame(
            {
                "text": df[d.text_column].astype(str),
                "source_label": df[d.label_column].astype(str),
                "split": split,
                "row": np.arange(len(df)),
            }
        )
    else:
        where = str(d.path)
        df = datasets.read_classification_file(
            str(d.path),
            text_column=d.text_column,
            label_column=d.label_column,
            split_column=d.split_column,
        )
        frame = df[["text", "label", "split", "row"]].rename(columns={"label": "source_label"})
    lab = frame["source_label"]
    if d.positive:
        is_pos = lab.isin(d.positive).to_numpy()
        keep = is_pos | (lab.isin(d.negatives).to_numpy() if d.negatives else True)
        y = is_pos.astype(np.int64)
    else:
        lookup = {v: i for i, v in enumerate(d.class_labels or spec.classes)}
        mapped = lab.map(lookup)
        keep = mapped.notna().to_numpy()
        if not keep.all() and d.unknown_labels == "error":
            r = int(np.argmin(keep))
            others = sorted(set(lab[~keep]))
            raise ValueError(
                f"{where}: row {int(frame['row'].iloc[r])}: label {lab.iloc[r]!r} is none of "
                f"task {spec.name!r}'s classes {list(lookup)} ({len(others)} such labels, e.g. "
                f"{others[:5]}); map them with data.class_labels, or set data.unknown_labels: drop"
            )
        y = mapped.fillna(-1).to_numpy(dtype=np.int64)
    out = frame.assign(label=y)[keep].reset_index(drop=True)
    if out.empty:
        raise ValueError(f"{where}: no row belongs to task {spec.name!r}")
    return out[["text", "label", "split", "row", "source_label"]]
