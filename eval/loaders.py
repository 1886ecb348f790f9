"""Load a benchmark's rows (local copy, hub, or generator) and map them to prepared records.

Local data: ``--data-dir DIR`` where ``DIR/<name>/`` (or an alias in ``dir_names``) holds the files as
published; the definition's ``files`` patterns are searched recursively and the first pattern with a
match wins. ``--data PATH`` may also be such a DIR, the benchmark's own folder, or one data file.
Parquet, JSONL and JSON are read directly (no cache written). Image columns may hold
``{"bytes", "path"}`` dicts, raw bytes, paths (relative to the data file or the benchmark folder),
or PIL images (hub rows); bytes stay bytes until a batch needs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from eval.adapters import get_adapter
from eval.registry import BenchmarkSpec, candidates
from mhpo_vl.errors import UserError
from mhpo_vl.jsonl import iter_jsonl

_MISSING = object()
_PLACEHOLDER = re.compile(r"\s*<image\d*>\s*")
_FORMAT_FIELD = re.compile(r"\{([A-Za-z_][\w.]*)\}")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ----------------------------------------------------------------------------- locating files


def benchmark_root(spec: BenchmarkSpec, base: Path) -> Path:
    """``base/<name or alias>`` when such a folder exists, else ``base`` itself."""
    for name in [spec.name, *spec.dir_names]:
        if (base / name).is_dir():
            return base / name
    return base


def locate_files(spec: BenchmarkSpec, path: str | Path) -> list[Path]:
    """The data files for ``spec`` under ``path`` (a data dir, the benchmark folder, or a file)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{spec.name}: data path not found: {path}")
    root = benchmark_root(spec, path)
    for pattern in spec.files:
        found = sorted(p for p in root.glob(pattern) if p.is_file() and not _hidden(p, root))
        if found:
            return found
    raise UserError(
        f"{spec.name}: no data file under {root} matching {', '.join(spec.files)} "
        f"(expected the files as published, e.g. {path}/{spec.name}/...)"
    )


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


# ----------------------------------------------------------------------------- reading rows


def read_rows(path: Path) -> Iterator[tuple[dict, str]]:
    """Rows of one file with a location string (``file:line`` or ``file row i``) for error messages."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise UserError(f"{path}: cannot read parquet ({exc})") from None
        for i, row in enumerate(table.to_pylist()):
            yield row, f"{path} row {i}"
    elif suffix == ".jsonl":
        for lineno, row in iter_jsonl(path):
            yield row, f"{path}:{lineno}"
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if isinstance(data, dict):  # {"id": row, ...} or {"data": [rows]}
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(data) == 1 and lists else list(data.values())
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise UserError(f"{path} item {i}: expected a JSON object")
            yield row, f"{path} item {i}"
    else:
        raise UserError(f"{path}: unsupported file type {suffix!r} (use .parquet, .jsonl or .json)")


def _hub_rows(spec: BenchmarkSpec) -> Iterator[tuple[dict, str]]:
    hub = spec.hub
    if hub is None or not hub.id:
        raise UserError(f"{spec.name}: no hub source defined; pass --data-dir with a local copy")
    from mhpo_vl.hub import load_hub_dataset

    try:
        ds = load_hub_dataset(hub.id, hub.config, hub.split,
                              hint=f"pass --data-dir DIR with DIR/{spec.name}/ holding the files as published")
    except UserError as exc:
        raise UserError(f"{spec.name}: {exc}") from None
    for i, row in enumerate(ds):
        yield dict(row), f"{hub.id}[{hub.split}] row {i}"


def _reasoning_gym_rows(spec: BenchmarkSpec) -> Iterator[tuple[dict, str]]:
    cfg = spec.reasoning_gym
    try:
        import reasoning_gym
    except ImportError:
        raise UserError(f"{spec.name}: needs the reasoning-gym package (pip install reasoning-gym)") from None
    ds = reasoning_gym.create_dataset(cfg.dataset, seed=cfg.seed, size=cfg.size, **cfg.options)
    for i, entry in enumerate(ds):
        yield dict(entry), f"reasoning_gym:{cfg.dataset} item {i}"


# ----------------------------------------------------------------------------- row -> record


def get_field(row: dict, names: list[str], default: Any = _MISSING) -> Any:
    """The first present, non-null value among candidate (dotted) column names."""
    for name in names:
        node: Any = row
        for part in name.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                node = _MISSING
                break
        if node is not _MISSING and node is not None:
            return node
    if default is _MISSING:
        raise ValueError(f"missing field {' / '.join(names)} (columns: {', '.join(map(str, row))})")
    return default


def answer_to_str(value: Any) -> str:
    """A gold answer as text; integral floats lose their ``.0`` (AMC stores 27.0 for 27)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(answer_to_str(v) for v in value)
    return str(value).strip()


def render_format(template: str, row: dict) -> str:
    """Fill ``{column}`` (dotted allowed) from the row; nothing else is interpreted."""
    return _FORMAT_FIELD.sub(lambda m: str(get_field(row, [m.group(1)], "")), template)


def normalize_images(value: Any, base_dirs: list[Path]) -> list[Any]:
    """Image column value -> list of ``{"bytes": ...}`` dicts, absolute path strings or PIL images."""
    items = value if isinstance(value, (list, tuple)) else [value]
    images: list[Any] = []
    for item in items:
        if item is None or item == "":
            continue
        if isinstance(item, dict):
            if item.get("bytes"):
                images.append({"bytes": item["bytes"]})
                continue
            item = item.get("path")
            if not item:
                continue
        if isinstance(item, (bytes, bytearray)):
            images.append({"bytes": bytes(item)})
        elif isinstance(item, str):
            images.append(_resolve_image(item, base_dirs))
        else:
            images.append(item)  # a PIL image from a hub dataset
    return images


def _resolve_image(name: str, base_dirs: list[Path]) -> str:
    path = Path(name)
    tried = [path] if path.is_absolute() else [b / path for b in base_dirs]
    for candidate in tried:
        if candidate.is_file():
            return str(candidate.resolve())
    where = ", ".join(str(b) for b in base_dirs) or "(no base folder)"
    raise ValueError(f"image {name!r} not found under {where} (extract the published image archive there?)")


def lettered(choices: list[str]) -> str:
    """``["3", "4"]`` -> ``"(A) 3\\n(B) 4"``."""
    return "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def subset_labels(columns: list[str]) -> dict[str, str]:
    """Breakdown names -> columns: a nested column is named by its last part (``metadata.task`` ->
    ``task``, as the official scorers name it) unless two columns would share that name.

    >>> subset_labels(["question_type", "metadata.task"])
    {'question_type': 'question_type', 'task': 'metadata.task'}
    """
    leaves = [c.rsplit(".", 1)[-1] for c in columns]
    return {(leaf if leaves.count(leaf) == 1 else col): col for leaf, col in zip(leaves, columns)}


def row_to_record(spec: BenchmarkSpec, row: dict, index: int, base_dirs: list[Path], *,
                  with_images: bool = True) -> dict:
    """Map one published row to a prepared record (raises ValueError on a row it cannot use).

    ``with_images=False`` leaves ``images`` empty (scoring needs none, so image files may be absent)."""
    f = spec.fields
    ids = candidates(f.id)
    record_id = get_field(row, ids, None) if ids else None
    prompt = render_format(spec.prompt_format, row) if spec.prompt_format else get_field(row, candidates(f.prompt))
    record: dict[str, Any] = {
        "id": str(index) if record_id is None else answer_to_str(record_id),
        "prompt": str(prompt),
        "answer": answer_to_str(get_field(row, candidates(f.answer))),
        "images": (normalize_images(get_field(row, candidates(f.images), None), base_dirs)
                   if f.images and with_images else []),
        "source": spec.name,
        "split": spec.hub.split if spec.hub else "test",
        "meta": {},
    }
    rule = spec.answer_rule()
    if rule.field:
        raw = str(get_field(row, [rule.field]))
        record["answer_type"] = rule.map.get(raw, raw) if rule.map else raw
    else:
        record["answer_type"] = rule.value
    choices = get_field(row, candidates(f.choices), None) if f.choices else None
    if choices:
        record["choices"] = [str(c) for c in choices]
    if spec.subsets:
        record["meta"]["subsets"] = {label: answer_to_str(get_field(row, [name], ""))
                                     for label, name in subset_labels(spec.subsets).items()}
    for name in spec.meta:
        value = get_field(row, [name], None)
        if value is not None:
            record["meta"][name] = value
    if spec.adapter:
        record = get_adapter(spec.adapter)(row, record)
    if record["images"] or _PLACEHOLDER.search(record["prompt"]):
        record["prompt"] = _PLACEHOLDER.sub(" ", record["prompt"]).strip()
    if record.get("choices") and spec.append_choices:
        record["prompt"] = f"{record['prompt']}\nChoices:\n{lettered(record['choices'])}"
    if not record["answer"]:
        raise ValueError("empty answer")
    if record["answer_type"] not in ("math", "choice", "numeric", "bbox", "text"):
        raise ValueError(f"unknown answer_type {record['answer_type']!r}")
    return record


# ----------------------------------------------------------------------------- entry point


def _rows(spec: BenchmarkSpec, data_path: Optional[Path]) -> Iterator[tuple[dict, str, list[Path]]]:
    if spec.source == "reasoning_gym":
        for row, where in _reasoning_gym_rows(spec):
            yield row, where, []
        return
    if data_path is None:
        for row, where in _hub_rows(spec):
            yield row, where, []
        return
    files = locate_files(spec, data_path)
    root = benchmark_root(spec, data_path) if data_path.is_dir() else files[0].parent
    for file in files:
        base_dirs = list(dict.fromkeys([file.parent, root]))
        for row, where in read_rows(file):
            yield row, where, base_dirs


def load_records(
    spec: BenchmarkSpec, *, data_dir: str | Path | None = None, limit: int | None = None,
    with_images: bool = True,
) -> list[dict]:
    """The benchmark's records in file order (first ``limit`` when given).

    ``data_dir``: a folder holding ``<name>/`` (as ``--data-dir``), the benchmark's own folder, or a
    file; None loads from the hub (needs network or the HF cache) or the generator.
    """
    data_path = Path(data_dir) if data_dir is not None else None
    records: list[dict] = []
    seen: dict[str, str] = {}
    for index, (row, where, base_dirs) in enumerate(_rows(spec, data_path)):
        if limit is not None and index >= limit:
            break
        try:
            record = row_to_record(spec, row, index, base_dirs, with_images=with_images)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{where}: {spec.name}: {exc}") from None
        if record["id"] in seen:
            raise UserError(f"{where}: {spec.name}: duplicate id {record['id']!r} (first at {seen[record['id']]})")
        seen[record["id"]] = where
        records.append(record)
    if not records:
        raise UserError(f"{spec.name}: no rows found")
    return records
