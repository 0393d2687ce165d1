"""Load user text data from local .txt / .jsonl / .json / .parquet files.

Users bring their own calibration and distillation data. Loading goes through the
``datasets`` library (Arrow, the same readers the HF ecosystem uses), but JSON input is
validated line by line first: ``datasets`` reports a bad record as a pyarrow/pandas error
with no file or line ("Expected object or value"), and even chokes on valid files that mix
blank lines with a field whose type varies. Here every problem names ``path:line``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union

PathLike = Union[str, "os.PathLike[str]"]

# extension -> datasets builder name
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".txt": "text",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}


def _require_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")


def check_data_files(data_path: PathLike | None, argument: str = "data_path",
                     extensions: Sequence[str] | None = tuple(SUPPORTED_EXTENSIONS)) -> list[Path]:
    """The files of ``data_path`` (comma-separated), checked to exist, be regular, non-empty files
    with one of ``extensions`` (``None``: any). Stages call it before loading a model, so a
    wrong path fails in a second, naming the argument, instead of after the weights load."""
    files = [Path(p.strip()).expanduser() for p in str(data_path or "").split(",") if p.strip()]
    for path in files:
        where = f"{argument}: {path}"
        if not path.exists():
            raise FileNotFoundError(f"{where}: no such file")
        if not path.is_file():
            raise ValueError(f"{where}: not a regular file")
        if extensions is not None and path.suffix.lower() not in extensions:
            raise ValueError(f"{where}: unsupported file extension {path.suffix or '(none)'!r}; "
                             f"supported: {', '.join(extensions)}")
        if path.stat().st_size == 0:
            raise ValueError(f"{where}: file is empty")
    return files


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for every non-blank line of a JSONL file.

    Line numbers are 1-based and count blank lines, so they match an editor. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError("path:line: ...")`` for invalid
    UTF-8, invalid JSON or a non-object line, and ``ValueError("path: ...")`` when the file
    holds no records. Reused by the chat and preference loaders for the same guarantees.
    """
    path = Path(path)
    _require_file(path)
    found = False
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8: {err.reason}") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")  # editors on Windows write a BOM
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: invalid JSON: {err.msg} (column {err.colno})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            found = True
            yield lineno, record
    if not found:
        raise ValueError(f"{path}: file is empty (no JSON records)")


def _iter_json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records of a .json/.jsonl file with a location label: ``path:line`` for JSON Lines,
    ``path[index]`` for a top-level JSON array (``.json`` files may be either)."""
    _require_file(path)
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if path.suffix.lower() == ".json" and head.startswith("["):
        try:
            records = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: invalid JSON: {err}") from None
        if not records:
            raise ValueError(f"{path}: file is empty (no JSON records)")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}[{index}]: expected a JSON object, got {type(record).__name__}"
                )
            yield f"{path}[{index}]", record
        return
    try:
        for lineno, record in iter_jsonl(path):
            yield f"{path}:{lineno}", record
    except ValueError:
        if path.suffix.lower() == ".json" and head.startswith("{"):
            try:
                whole = json.loads(path.read_text(encoding="utf-8-sig"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                whole = None
            if isinstance(whole, dict):  # a pretty-printed single object: say so plainly
                raise ValueError(
                    f"{path}: holds one JSON object; expected a JSON array of objects "
                    "or JSON Lines (one object per line)"
                ) from None
        raise


def _load_json_texts(path: Path, text_field: str) -> list[str]:
    """Validate a JSON(L) file, then read its text column through ``datasets``.

    ``datasets`` gets a compact copy holding only ``text_field`` (one object per line):
    unrelated fields whose type drifts between records, or blank lines, cannot break it.
    """
    import datasets

    count = 0
    with tempfile.TemporaryDirectory(prefix="nemo_minitron_json_") as tmp:
        compact = Path(tmp) / "records.jsonl"
        with compact.open("w", encoding="utf-8") as out:
            for where, record in _iter_json_records(path):
                if text_field not in record:
                    raise ValueError(
                        f"{where}: record has no field {text_field!r} "
                        f"(fields: {', '.join(map(repr, record)) or 'none'})"
                    )
                value = record[text_field]
                if not isinstance(value, str):
                    raise ValueError(
                        f"{where}: field {text_field!r} must be a string, "
                        f"got {type(value).__name__}"
                    )
                out.write(json.dumps({text_field: value}, ensure_ascii=False) + "\n")
                count += 1
        dataset = datasets.load_dataset(
            "json", data_files=str(compact), split="train",
            cache_dir=str(Path(tmp) / "cache"), keep_in_memory=True,
        )
        texts = list(dataset[text_field])
    if len(texts) != count:  # cheap guard against a silent datasets regression
        raise RuntimeError(f"{path}: datasets returned {len(texts)} records, expected {count}")
    return texts


def _load_with_datasets(path: Path, builder: str, **kwargs: Any) -> Any:
    """``datasets.load_dataset`` on one local file; its errors get the file name attached."""
    import datasets

    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as err:  # DatasetGenerationError, ArrowInvalid, ... name no file
        cause = err.__cause__ or err
        raise ValueError(f"{path}: datasets could not load it: {cause}") from err


def _load_txt_texts(path: Path, sample_by: str) -> list[str]:
    """A .txt file via ``datasets``' text builder; whitespace-only samples are dropped."""
    _require_file(path)
    if path.stat().st_size == 0:  # datasets raises an anonymous DatasetGenerationError
        raise ValueError(f"{path}: file is empty (no text)")
    dataset = _load_with_datasets(path, "text", sample_by=sample_by)
    texts = [text for text in dataset["text"] if text.strip()]
    if not texts:
        raise ValueError(f"{path}: file is empty (no text)")
    return texts


def _load_parquet_texts(path: Path, text_field: str) -> list[str]:
    """A .parquet file via ``datasets``; the column is checked from the schema first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: not a readable Parquet file: {err}") from None
    if text_field not in schema.names:
        raise ValueError(
            f"{path}: no column {text_field!r} (columns: {', '.join(map(repr, schema.names))})"
        )
    column_type = schema.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise ValueError(f"{path}: column {text_field!r} must hold strings, got {column_type}")
    dataset = _load_with_datasets(path, "parquet")
    texts = list(dataset[text_field])
    if not texts:
        raise ValueError(f"{path}: file is empty (no rows)")
    for row, text in enumerate(texts):
        if text is None:
            raise ValueError(f"{path}: row {row}: column {text_field!r} is null")
    return texts


def load_text_file(
    path: PathLike,
    text_field: str = "text",
    sample_by: Literal["line", "paragraph", "document"] = "line",
) -> list[str]:
    """Documents of one local file, as strings, in file order.

    ``.jsonl``/``.json`` and ``.parquet`` yield the ``text_field`` of each record;
    ``.txt`` yields one document per line (``sample_by="line"``), per blank-line-separated
    paragraph, or the whole file (``"document"``); ``text_field`` does not apply to it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported file extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    builder = SUPPORTED_EXTENSIONS[suffix]
    if builder == "json":
        return _load_json_texts(path, text_field)
    if builder == "text":
        return _load_txt_texts(path, sample_by)
    return _load_parquet_texts(path, text_field)


def load_text_files(
    paths: PathLike | Sequence[PathLike],
    text_field: str = "text",
    sample_by: Literal["line", "paragraph", "document"] = "line",
) -> list[str]:
    """Documents of one or several local files (any mix of supported types), concatenated
    in the order given."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("no data files given")
    texts: list[str] = []
    for path in paths:
        texts.extend(load_text_file(path, text_field=text_field, sample_by=sample_by))
    return texts
