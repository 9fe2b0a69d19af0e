"""Format I/O of user tables: CSV / TSV / JSONL / JSON / Parquet by suffix, compression, checks.

Reading refuses a repeated column name (CSV header, JSON key) and names the file and the line in
its errors; writing is atomic. A frame read by :func:`read_table` remembers its file, so
:func:`row_ref` can say ``data row 8 (file line 9)``. The calibkit header of a Scores file (class
order, provenance) is read by :func:`read_scores_meta`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibkit._atomic import atomic_write, check_writable

__all__ = [
    "TABLE_SUFFIXES",
    "check_table_output",
    "read_scores_meta",
    "read_table",
    "row_ref",
    "write_table",
]

#: suffix -> reader name; ``.gz``/``.bz2``/``.xz``/``.zst``/``.zip`` may follow any text format
TABLE_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}


#: attribute of a DataFrame read by :func:`read_table` that records where its rows came from
_SOURCE_ATTR = "calibkit_source"
_PANDAS_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}


def _table_format(path: Path) -> tuple[str, str | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in _COMPRESSION:
        compression = suffixes.pop()
    fmt = TABLE_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(TABLE_SUFFIXES))
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its suffix; use one of {known} "
            "(text formats may end in .gz/.bz2/.xz/.zst/.zip)"
        )
    if fmt == "parquet" and compression is not None:
        raise ValueError(
            f"{path.name!r}: Parquet files are compressed internally; drop {compression}"
        )
    return fmt, compression


def _require_codec(path: Path, fmt: str, compression: str | None) -> None:
    """Raise ``ImportError`` naming the package to install when a format's reader is missing."""
    if compression == ".zst":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise ImportError(
                f"{path}: .zst files need the zstandard package (pip install zstandard)"
            ) from None
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:  # pragma: no cover - pyarrow is installed in dev
            raise ImportError(
                f"{path}: Parquet files need pyarrow (pip install 'calibkit[parquet]')"
            ) from None


def _codec_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the decompressors raise on corrupt or truncated data."""
    import lzma
    import zipfile
    import zlib

    errs: list[type[BaseException]] = [EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile]
    try:
        import zstandard

        errs.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errs)


def _open_text(path: Path, compression: str | None) -> Any:
    """Open a (possibly compressed) text table for reading, as UTF-8 with universal newlines."""
    import io

    raw: Any
    if compression is None:
        raw = open(path, "rb")  # wrapped and returned
    elif compression == ".gz":
        import gzip

        raw = gzip.open(path, "rb")
    elif compression == ".bz2":
        import bz2

        raw = bz2.open(path, "rb")
    elif compression == ".xz":
        import lzma

        raw = lzma.open(path, "rb")
    elif compression == ".zst":
        import zstandard

        raw = zstandard.open(path, "rb")
    else:
        import zipfile

        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            zf.close()
            raise ValueError(f"{path}: a .zip table must hold exactly one file; it holds {names}")
        raw = zf.open(names[0])
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _check_duplicate_columns(p: Path, names: Sequence[Any]) -> None:
    seen: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if name is None or (isinstance(name, float) and np.isnan(name)):
            continue
        seen.setdefault(str(name), []).append(j + 1)
    dup = {k: v for k, v in seen.items() if len(v) > 1}
    if dup:
        desc = "; ".join(f"{k!r} at columns {', '.join(map(str, v))}" for k, v in dup.items())
        raise ValueError(
            f"{p}: the header repeats column name(s) {desc}; rename or drop the copies "
            "(a repeated score or label column is ambiguous)"
        )


def _read_csv(p: Path, sep: str, text_columns: Sequence[str]) -> Any:
    import pandas as pd

    header = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    _check_duplicate_columns(p, header.iloc[0].tolist() if len(header) else [])
    return pd.read_csv(p, sep=sep, dtype={c: str for c in text_columns})


def _no_duplicate_keys(where: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(
                    f"{where} repeats the key {k!r}; rename or drop the copy "
                    "(a repeated score or label field is ambiguous)"
                )
            out[k] = v
        return out

    return hook


#: the end of a JSON object key: a closing quote, optional blanks, a colon
_KEY_END = re.compile(r'"\s*:')


def _read_json_lines(p: Path, compression: str | None) -> tuple[Any, list[int]]:
    """JSON lines -> (DataFrame, file line of each row); blank lines are skipped.

    The lines are parsed in one call (fast); a line that fails, holds more than one value, or
    might repeat a key is then parsed on its own, so an error names its file line.
    """
    import pandas as pd

    with _open_text(p, compression) as f:
        numbered = [(i, ln) for i, ln in enumerate(f, start=1) if ln.strip()]
    records: Any = None
    try:
        records = json.loads("[" + ",".join(ln for _, ln in numbered) + "]")
    except json.JSONDecodeError:
        pass
    if not (
        isinstance(records, list)
        and len(records) == len(numbered)
        and all(isinstance(r, dict) for r in records)
    ):
        records = [_json_line(p, i, ln) for i, ln in numbered]
    for (lineno, line), rec in zip(numbered, records, strict=True):
        # every key ends in '"' + ':'; more such marks than keys means a nested object, a ':'
        # inside a string, or a repeated key: parse that line again with an exact check
        if len(_KEY_END.findall(line)) != len(rec):
            _json_line(p, lineno, line, exact=True)
    lines = [i for i, _ in numbered]
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(), lines


def _json_line(p: Path, lineno: int, line: str, *, exact: bool = False) -> dict[str, Any]:
    where = f"cannot parse {p} as JSON lines: file line {lineno}"
    try:
        rec = json.loads(line, object_pairs_hook=_no_duplicate_keys(where) if exact else None)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{where} holds a JSON {type(rec).__name__}, not an object")
    return rec


def _read_json(p: Path, compression: str | None) -> tuple[Any, list[int] | None]:
    """A ``.json`` file: a list of records (one object is one record), else JSON lines."""
    import pandas as pd

    with _open_text(p, compression) as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _read_json_lines(p, compression)
        raise ValueError(
            f"{p} is not valid JSON ({exc.msg} at file line {exc.lineno}, column {exc.colno})"
        ) from None
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise ValueError(f"{p}: expected a JSON list of records (objects), one per row")
    if len(_KEY_END.findall(text)) != sum(len(r) for r in obj):
        # a nested object, a ':' inside a string, or a repeated key: check exactly
        json.loads(text, object_pairs_hook=_no_duplicate_keys(f"{p}: a record"))
    return (pd.DataFrame.from_records(obj) if obj else pd.DataFrame()), None


def read_table(path: str | os.PathLike[str], *, text_columns: Sequence[str] = ()) -> Any:
    """Read a table into a pandas ``DataFrame``, the format chosen by the file suffix.

    ``.csv``, ``.tsv``/``.txt`` (tab-separated), ``.jsonl``/``.ndjson`` (one JSON object per
    line), ``.json`` (a list of records, or JSON lines), ``.parquet``/``.pq`` (needs pyarrow).
    Text formats may be compressed (``.csv.gz`` ...; ``.zst`` needs ``zstandard``). JSON values
    keep their JSON types (no date or dtype guessing). A repeated column name (CSV header,
    JSON key) is an error, never silently renamed or dropped. The frame remembers its file, so
    errors from :func:`scores_from_table` can say ``data row 8 (file line 9)``.

    Parameters
    ----------
    path : path-like
    text_columns : sequence of str
        CSV/TSV columns to read as text (e.g. ids such as ``"007"``, which would become ``7``);
        names not in the file are ignored.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ImportError
        A needed optional package (zstandard, pyarrow) is missing; the message names it.
    ValueError
        Unknown suffix, unparsable or corrupt (compressed) content, repeated column names, or an
        empty table.
    """
    import pandas as pd

    p = Path(path)
    fmt, compression = _table_format(p)
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not a table file")
    if not p.is_file():
        raise FileNotFoundError(f"table file {p} not found")
    _require_codec(p, fmt, compression)
    lines: list[int] | None = None
    try:
        if fmt == "csv":
            df = _read_csv(p, ",", text_columns)
        elif fmt == "tsv":
            df = _read_csv(p, "\t", text_columns)
        elif fmt == "jsonl":
            df, lines = _read_json_lines(p, compression)
        elif fmt == "json":
            df, lines = _read_json(p, compression)
        else:
            df = pd.read_parquet(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"cannot parse {p} as {fmt.upper()}: {_one_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"cannot read {p} as UTF-8 text ({exc.reason} at byte {exc.start}); is it "
            "compressed or binary without a matching suffix (.gz .bz2 .xz .zst .zip .parquet)?"
        ) from None
    except ValueError as exc:
        if str(p) in str(exc):  # our own messages already name the file
            raise
        raise ValueError(f"cannot parse {p} as {fmt.upper()}: {_one_line(exc)}") from None
    except _codec_errors() as exc:
        raise ValueError(
            f"cannot read {p}: corrupt or truncated {compression or fmt} data ({_one_line(exc)})"
        ) from None
    except OSError as exc:
        # gzip.BadGzipFile, bz2's "Invalid data stream", pyarrow's "Parquet magic bytes not
        # found": OSErrors without a file name; permission errors keep theirs
        if exc.filename is not None or isinstance(exc, PermissionError | FileNotFoundError):
            raise
        raise ValueError(
            f"cannot read {p}: corrupt or truncated {compression or fmt} data ({_one_line(exc)})"
        ) from None
    if len(df) == 0:
        raise ValueError(f"{p} has no rows")
    _check_duplicate_columns(p, list(df.columns))
    df.columns = [str(c) for c in df.columns]
    df.attrs[_SOURCE_ATTR] = {
        "path": str(p),
        "format": fmt,
        "compression": compression,
        "n_rows": len(df),
        "lines": lines,
    }
    return df


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def write_table(df: Any, path: str | os.PathLike[str]) -> Path:
    """Write a ``DataFrame`` atomically (temp file + ``os.replace``), the format by suffix.

    Same formats as :func:`read_table`; ``.json`` is written as a list of records. JSON floats
    keep 15 significant digits.
    """
    p = Path(path)
    fmt, compression = _table_format(p)
    _require_codec(p, fmt, compression)
    comp = _PANDAS_COMPRESSION.get(compression or "")
    with atomic_write(p) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False, compression=comp)
        elif fmt == "tsv":
            df.to_csv(tmp, index=False, sep="\t", compression=comp)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, compression=comp, double_precision=15)
        elif fmt == "json":
            df.to_json(tmp, orient="records", compression=comp, double_precision=15)
        else:
            df.to_parquet(tmp, index=False)
    return p


def check_table_output(path: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Check an output table path before any work: known suffix, codec installed, writable.

    Raises
    ------
    ValueError
        Unknown suffix, or ``path`` is a folder.
    ImportError
        ``.zst`` without ``zstandard`` (the message says what to install).
    OSError
        The folder cannot be created or written.
    """
    p = Path(path)
    fmt, compression = _table_format(p)
    _require_codec(p, fmt, compression)
    return check_writable(p, what=what)


def read_scores_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The calibkit header of a Scores file (``{"classes": [...], "meta": {...}}``), or ``{}``.

    Parquet keeps it in the schema metadata, CSV/JSONL in a ``<path>.meta.json`` sidecar (see
    :meth:`calibkit.Scores.save`). A plain table has none.
    """
    p = Path(path)
    raw: Any = None
    where = str(p)
    fmt, _ = _table_format(p)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            md = pq.read_schema(p).metadata or {}
        except Exception as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
            raise ValueError(f"cannot read {p} as Parquet: {_one_line(exc)}") from None
        raw = md.get(b"calibkit")
    else:
        side = p.with_name(p.name + ".meta.json")
        if side.is_file():
            raw = side.read_text(encoding="utf-8")
            where = str(side)
    if raw is None:
        return {}
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: the calibkit metadata is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: the calibkit metadata is not a JSON object")
    classes = header.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not all(isinstance(c, str | int) for c in classes)
    ):
        raise ValueError(f"{where}: field 'classes' must be a list of class names")
    if not isinstance(header.get("meta", {}), dict):
        raise ValueError(f"{where}: field 'meta' must be a JSON object")
    return header


def _csv_file_line(src: dict[str, Any], row: int) -> int | None:
    """File line (1-based) where data row ``row`` (0-based) of a CSV/TSV starts; None if unknown."""
    import csv

    sep = "," if src["format"] == "csv" else "\t"
    try:
        with _open_text(Path(src["path"]), src.get("compression")) as f:
            reader = csv.reader(f, delimiter=sep)
            next(reader)  # header
            k = -1
            while True:
                start = reader.line_num + 1
                rec = next(reader)
                if not rec:  # blank lines are skipped by the reader, as by pandas
                    continue
                k += 1
                if k == row:
                    return start
    except (OSError, StopIteration, csv.Error, ValueError, EOFError):
        return None


def row_ref(df: Any, i: int) -> str:
    """Where the ``i``-th row (0-based position) of ``df`` is, for error messages.

    For a frame from :func:`read_table`: ``data row 8 (file line 9)``, data rows counted from 1
    without the header, file lines from 1 (JSON arrays and Parquet: ``data row 8``). Other
    frames: ``row 7 (0-based)``.
    """
    src = df.attrs.get(_SOURCE_ATTR) if hasattr(df, "attrs") else None
    if not src:
        return f"row {i} (0-based)"
    label = df.index[i]
    if isinstance(label, int | np.integer) and 0 <= int(label) < int(src["n_rows"]):
        row = int(label)
    else:  # re-indexed after reading: the position no longer names a file row
        return f"row {i} (0-based, of {len(df)} selected rows)"
    line: int | None = None
    if src.get("lines") is not None:
        line = int(src["lines"][row])
    elif src["format"] in ("csv", "tsv"):
        line = _csv_file_line(src, row)
    return f"data row {row + 1}" + (f" (file line {line})" if line is not None else "")
