"""Loaders for the real datasets calibkit is tested and benchmarked on, and its bundled sample.

The datasets live outside the package, in a ``shared/data`` folder (see its README for sources
and licenses). :func:`default_data_dir` finds it: ``$CALIBKIT_DATA`` if set, else the first
``shared/data`` folder beside the current directory or the package, searching upward.

Three formats:

* classification CSV -> :func:`load_classification` -> DataFrame ``text, label, label_id, split``;
  a user's own CSV / JSONL / Parquet file -> :func:`read_classification_file` (any column names);
* multiple-choice JSONL -> :func:`load_mcq` -> list of :class:`MCQItem` (a user's own JSONL file:
  :func:`load_mcq_file`);
* preference pairs JSONL -> :func:`load_pairs` -> DataFrame ``prompt, chosen, rejected, ...``.

:func:`load_bundled_sample` reads the small samples shipped inside the package (no data folder
needed), used by ``calibkit demo``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "CLASSIFICATION",
    "MCQ",
    "PAIRS",
    "MCQItem",
    "default_data_dir",
    "list_datasets",
    "load_bundled_sample",
    "load_classification",
    "load_mcq",
    "load_mcq_file",
    "load_pairs",
    "read_classification_file",
]

#: classification datasets: name -> CSV path relative to the data folder
CLASSIFICATION: dict[str, str] = {
    "subj": "subj/subj.csv",
    "cr": "cr/cr.csv",
    "sst2": "sst2/sst2.csv",
    "trec": "trec/trec.csv",
    "banking77": "banking77/banking77.csv",
    "twitter_complaints": "twitter_complaints/complaints.csv",
    "ddxplus_sample": "ddxplus_sample/ddxplus_sample.csv",
}
#: multiple-choice datasets: name -> {split: JSONL path}
MCQ: dict[str, dict[str, str]] = {
    "arc_challenge": {
        "test": "arc_challenge/arc_challenge_test.jsonl",
        "validation": "arc_challenge/arc_challenge_validation.jsonl",
    },
    "arc_easy": {
        "test": "arc_easy/arc_easy_test.jsonl",
        "validation": "arc_easy/arc_easy_validation.jsonl",
    },
    "mmlu": {
        "dev": "mmlu/mmlu_dev.jsonl",
        "validation": "mmlu/mmlu_val.jsonl",
        "test": "mmlu/mmlu_test.jsonl",
    },
    "medmcqa": {"validation": "medmcqa/medmcqa_validation.jsonl"},
    "openbookqa": {"test": "openbookqa/openbookqa_test.jsonl"},
}
#: preference-pair datasets: name -> JSONL path
PAIRS: dict[str, str] = {
    "ultrafeedback_binarized": "ultrafeedback_binarized/ultrafeedback_binarized_sample.jsonl",
    "hh_rlhf": "hh_rlhf/hh_rlhf_harmless_base_test.jsonl",
}
_ALIASES = {"ultrafeedback": "ultrafeedback_binarized", "arc": "arc_challenge", "val": "validation"}
_BUNDLED = {
    "subj": "subj_sample.csv",
    "sst2": "sst2_sample.csv",
    "arc_challenge": "arc_challenge_sample.jsonl",
}


@dataclass(frozen=True)
class MCQItem:
    """One multiple-choice question.

    Attributes
    ----------
    question : str
    choices : tuple of str
        The options, in order (lettered A, B, ... when prompted).
    answer : int
        0-based index of the correct option.
    subject : str
    id : str
        Stable id (the dataset's own where it has one, else ``<name>/<split>/<row>``).
    split : str
    """

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""
    id: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"MCQItem {self.id!r}: needs >= 2 choices, got {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"MCQItem {self.id!r}: answer {self.answer} out of range for "
                f"{len(self.choices)} choices"
            )

    @property
    def answer_letter(self) -> str:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[self.answer]


def _candidates(start: Path) -> list[Path]:
    return [p / "shared" / "data" for p in [start, *start.parents]]


def default_data_dir() -> Path:
    """The real-data folder: ``$CALIBKIT_DATA``, else the nearest ``shared/data`` found upward
    from the current directory, then from this package's location.

    Raises ``FileNotFoundError`` when none exists.
    """
    env = os.environ.get("CALIBKIT_DATA")
    if env:
        d = Path(env).expanduser()
        if not d.is_dir():
            raise FileNotFoundError(f"$CALIBKIT_DATA={env} is not a directory")
        return d
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in _candidates(start):
            if d.is_dir():
                return d
    raise FileNotFoundError(
        "no shared/data folder found above the current directory or the package; "
        "set CALIBKIT_DATA to the datasets folder"
    )


def _root(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        return default_data_dir()
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"data_dir {d} is not a directory")
    return d


def _canon(name: str, table: dict[str, Any], kind: str) -> str:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in table:
        raise ValueError(f"unknown {kind} dataset {name!r}; known: {sorted(table)}")
    return key


def list_datasets() -> dict[str, list[str]]:
    """Names of the known datasets by kind."""
    return {
        "classification": sorted(CLASSIFICATION),
        "mcq": sorted(MCQ),
        "pairs": sorted(PAIRS),
    }


def _normalise_classification(df: Any, name: str) -> Any:
    """Ensure ``text, label, label_id, split`` (other columns kept)."""
    import pandas as pd

    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"{name}: columns {sorted(missing)} missing (has {list(df.columns)})")
    df = df.copy()
    df["text"] = df["text"].astype(str)
    df["label"] = df["label"].astype(str)
    if "label_id" not in df.columns:
        names = sorted(df["label"].unique())
        df["label_id"] = df["label"].map({c: i for i, c in enumerate(names)}).astype("int64")
    else:
        df["label_id"] = pd.to_numeric(df["label_id"]).astype("int64")
        # one id per label name and vice versa
        pairs = df[["label", "label_id"]].drop_duplicates()
        if pairs["label"].duplicated().any() or pairs["label_id"].duplicated().any():
            raise ValueError(f"{name}: label and label_id do not map one-to-one")
    if "split" not in df.columns:
        df["split"] = "all"
    df["split"] = df["split"].fillna("all").astype(str)
    front = ["text", "label", "label_id", "split"]
    return df[front + [c for c in df.columns if c not in front]].reset_index(drop=True)


def load_classification(
    name: str,
    *,
    split: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """A classification dataset as a DataFrame ``text, label, label_id, split`` (+ its extra
    columns).

    Parameters
    ----------
    name : str
        One of :data:`CLASSIFICATION` (``subj``, ``cr``, ``sst2``, ``trec``, ``banking77``,
        ``twitter_complaints``, ``ddxplus_sample``).
    split : str, optional
        Keep only this split (``train``, ``test``, ...). Datasets without an official split
        (``subj``, ``twitter_complaints``) have ``split == "all"``.
    data_dir : path, optional
        Defaults to :func:`default_data_dir`.

    Notes
    -----
    ``label_id`` is the dataset's own id where it has one, else the index of the label in the
    sorted label names.
    """
    import pandas as pd

    key = _canon(name, CLASSIFICATION, "classification")
    path = _root(data_dir) / CLASSIFICATION[key]
    if not path.is_file():
        raise FileNotFoundError(f"{key}: {path} not found")
    df = _normalise_classification(pd.read_csv(path, keep_default_na=False), key)
    if split is not None:
        split = _ALIASES.get(split, split)
        have = sorted(df["split"].unique())
        if split not in have:
            raise ValueError(f"{key} has no split {split!r}; splits: {have}")
        df = df[df["split"] == split].reset_index(drop=True)
    return df


def _read_table(path: Path) -> Any:
    """A CSV / TSV / JSONL / JSON / Parquet file as a DataFrame (format from the suffix)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        try:
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable {suffix[1:].upper()} file ({e})") from None
    if suffix in (".jsonl", ".ndjson"):
        return pd.DataFrame(_read_jsonl(path))
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e.msg})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path}: a .json data file must hold a list of records")
        return pd.DataFrame(data)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path}: use a .csv, .tsv, .jsonl, .json or .parquet file")


def read_classification_file(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    split_column: str | None = "split",
) -> Any:
    """A user's classification file as a DataFrame ``text, label, split, row`` (+ other columns).

    ``label`` holds the file's labels as strings (``None`` when ``label_column`` is None),
    ``split`` the split column's values (``"all"`` where the file has no such column) and
    ``row`` the 0-based row number in the file. A missing file, a missing column or an empty
    text / label cell raises an error naming the file, the row and the column.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"data file {p} not found")
    df = _read_table(p)
    need = [c for c in (text_column, label_column) if c is not None]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: no column {missing[0]!r}; columns: {list(df.columns)}")
    if len(df) == 0:
        raise ValueError(f"{p}: no rows")
    out = df.copy()
    for col, what in ((text_column, "text"), (label_column, "label")):
        if col is None:
            continue
        bad = out[col].isna().to_numpy().copy()
        if what == "label":
            bad |= (out[col].astype(str).str.strip() == "").to_numpy()
        if bad.any():
            raise ValueError(f"{p}: row {int(bad.argmax())}: empty {what} in column {col!r}")
    front = {
        "text": out[text_column].astype(str),
        "label": out[label_column].map(_label_str) if label_column is not None else None,
        "split": (
            out[split_column].fillna("all").astype(str)
            if split_column is not None and split_column in out.columns
            else "all"
        ),
        "row": range(len(out)),
    }
    import pandas as pd

    rest = out.drop(columns=[c for c in (text_column, label_column) if c is not None])
    rest = rest.drop(columns=[c for c in ("text", "label", "split", "row") if c in rest.columns])
    return pd.concat([pd.DataFrame(front, index=out.index), rest], axis=1).reset_index(drop=True)


def _label_str(value: Any) -> str:
    """A label cell as text; integral floats (``1.0`` from a numeric column) as ``"1"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_mcq_file(path: str | os.PathLike[str], *, name: str | None = None) -> list[MCQItem]:
    """A user's multiple-choice JSONL file (``question``, ``choices``, ``answer`` = 0-based index;
    optional ``subject``, ``id``, ``split``) as a list of :class:`MCQItem`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"multiple-choice file {p} not found")
    if p.suffix.lower() not in (".jsonl", ".ndjson"):
        raise ValueError(f"{p}: multiple-choice data must be a .jsonl file")
    rows = _read_jsonl(p)
    if not rows:
        raise ValueError(f"{p}: no questions")
    items = _mcq_items(rows, name or p.stem, "all", str(p))
    return [
        replace(it, split=str(r["split"])) if r.get("split") else it
        for it, r in zip(items, rows, strict=True)
    ]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: invalid JSON ({e.msg})") from e
    return rows


def _mcq_items(rows: list[dict[str, Any]], name: str, split: str, where: str) -> list[MCQItem]:
    items = []
    for i, r in enumerate(rows):
        for col in ("question", "choices", "answer"):
            if col not in r:
                raise ValueError(f"{where} row {i}: missing {col!r}")
        if not isinstance(r["choices"], list):
            raise ValueError(f"{where} row {i}: 'choices' must be a list")
        ans = r["answer"]
        if isinstance(ans, bool) or not (
            isinstance(ans, int) or (isinstance(ans, str) and ans.strip().lstrip("-").isdigit())
        ):
            raise ValueError(
                f"{where} row {i}: 'answer' must be a 0-based option index; got {ans!r}"
            )
        items.append(
            MCQItem(
                question=str(r["question"]),
                choices=tuple(str(c) for c in r["choices"]),
                answer=int(r["answer"]),
                subject=str(r.get("subject") or ""),
                id=str(r.get("id") or f"{name}/{split}/{i}"),
                split=split,
            )
        )
    return items


def load_mcq(
    name: str,
    *,
    split: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[MCQItem]:
    """A multiple-choice dataset as a list of :class:`MCQItem`.

    Parameters
    ----------
    name : str
        One of :data:`MCQ` (``arc_challenge``, ``arc_easy``, ``mmlu``, ``medmcqa``,
        ``openbookqa``).
    split : str, optional
        One split (e.g. ``test``); all splits, concatenated, when omitted.
    data_dir : path, optional
        Defaults to :func:`default_data_dir`.
    """
    key = _canon(name, MCQ, "multiple-choice")
    files = MCQ[key]
    if split is not None:
        split = _ALIASES.get(split, split)
        if split not in files:
            raise ValueError(f"{key} has no split {split!r}; splits: {sorted(files)}")
        files = {split: files[split]}
    root = _root(data_dir)
    items: list[MCQItem] = []
    for sp, rel in files.items():
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"{key}: {path} not found")
        items.extend(_mcq_items(_read_jsonl(path), key, sp, str(path)))
    return items


def load_pairs(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> Any:
    """Preference pairs as a DataFrame ``prompt, chosen, rejected`` (+ extra columns).

    ``name``: ``ultrafeedback_binarized`` (alias ``ultrafeedback``) or ``hh_rlhf``.
    """
    import pandas as pd

    key = _canon(name, PAIRS, "preference-pair")
    path = _root(data_dir) / PAIRS[key]
    if not path.is_file():
        raise FileNotFoundError(f"{key}: {path} not found")
    df = pd.DataFrame(_read_jsonl(path))
    missing = {"prompt", "chosen", "rejected"} - set(df.columns)
    if missing:
        raise ValueError(f"{key}: columns {sorted(missing)} missing")
    front = ["prompt", "chosen", "rejected"]
    return df[front + [c for c in df.columns if c not in front]]


def load_bundled_sample(name: str = "subj") -> Any:
    """A sample shipped inside the package (no data folder needed).

    ``"subj"``: 300 SUBJ sentences, 150 per class (DataFrame ``text, label, label_id, split``);
    ``"sst2"``: 300 SST-2 test sentences, 150 per class, then the demo's 4 in-context examples
    (``split == "train"``; DataFrame ``text, label, label_id, split, id``);
    ``"arc_challenge"``: 100 ARC-Challenge test questions (list of :class:`MCQItem`). Sources and
    licenses are in ``calibkit/data/README.md``.
    """
    from importlib.resources import files

    import pandas as pd

    key = _canon(name, _BUNDLED, "bundled")
    res = files("calibkit").joinpath("data", _BUNDLED[key])
    if not res.is_file():
        raise FileNotFoundError(f"bundled sample {_BUNDLED[key]} is missing from the package")
    if key == "arc_challenge":
        with res.open("r", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return _mcq_items(rows, key, "test", _BUNDLED[key])
    with res.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, keep_default_na=False)
    return _normalise_classification(df, key)
