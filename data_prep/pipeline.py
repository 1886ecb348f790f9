"""Run candidates from a source through validation and image normalisation into a SplitWriter."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from data_prep.errors import Reject
from data_prep.images import ImageOptions, ImageStore, load_image
from data_prep.records import Candidate, normalise_record, raw_id_of
from data_prep.writer import SplitWriter

log = logging.getLogger(__name__)

#: (prompt, normalised images) -> None, or raises Reject("prompt_too_long", ...)
PromptCheck = Callable[[str, list[Image.Image]], None]


@dataclass
class PrepareOptions:
    """Everything the pipeline needs besides the candidates themselves."""

    out_dir: Path
    split: str = "train"
    fmt: str = "jsonl"
    source: str = "jsonl"
    image_root: Path | None = None
    images: ImageOptions = field(default_factory=ImageOptions)
    answer_type: str | None = None
    prompt_check: PromptCheck | None = None
    limit: int | None = None


def prepare(candidates: Iterable[Candidate], options: PrepareOptions, total: int | None = None) -> dict[str, Any]:
    """Validate every candidate, write accepted records and rejects; return the split's summary.

    Invariant: ``summary["in"] == summary["out"] + summary["rejected"]``.
    """
    start = time.perf_counter()
    writer = SplitWriter(options.out_dir, options.split, options.fmt)
    store = ImageStore(options.out_dir, options.images.image_format)
    seen_ids: set[str] = set()
    n_in = 0
    try:
        progress = tqdm(candidates, total=total, desc=f"prep {options.split}", unit="rec", disable=None,
                        dynamic_ncols=True)
        for cand in progress:
            if options.limit is not None and n_in >= options.limit:
                break
            n_in += 1
            record_id = cand.raw_id or (cand.reject.raw_id if cand.reject is not None else None)
            try:
                if cand.reject is not None:
                    raise cand.reject
                fields = dict(cand.fields or {})
                record_id = raw_id_of(fields)
                if options.answer_type and fields.get("answer_type") is None:
                    fields["answer_type"] = options.answer_type
                record = normalise_record(fields, split=options.split, source=options.source,
                                          default_id=cand.default_id or _default_id(cand.loc))
                record_id = record["id"]
                if record_id in seen_ids:
                    raise Reject("duplicate_id", f"id {record_id!r} was already used by an accepted record")
                images = [load_image(ref, options.image_root, options.images) for ref in fields["images"]]
                if options.prompt_check is not None:
                    options.prompt_check(record["prompt"], images)
                record["images"] = [store.store(image) for image in images]
            except Reject as rej:
                writer.reject(cand.loc, rej.reason, rej.detail, record_id)
                continue
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - one odd record must not lose the whole run
                if not writer.reasons["unexpected_error"]:
                    log.warning("unexpected %s at %s; rejected as unexpected_error", type(exc).__name__, cand.loc)
                writer.reject(cand.loc, "unexpected_error", f"{type(exc).__name__}: {exc}", record_id)
                continue
            seen_ids.add(record_id)
            writer.write(record)
    except BaseException:
        writer.abort()
        raise
    summary = {
        "source": options.source, "format": options.fmt, "in": n_in, "out": writer.n_out,
        "rejected": sum(writer.reasons.values()), "rejected_by_reason": dict(writer.reasons.most_common()),
        "images_written": store.written, "images_deduplicated": store.reused,
        "seconds": round(time.perf_counter() - start, 3),
    }
    writer.close(summary)
    return summary


def _default_id(loc: dict[str, Any]) -> str:
    return "-".join(f"{key}{value}" for key, value in loc.items())


def summary_line(summary: dict[str, Any], split: str, out_dir: Path) -> str:
    """e.g. ``prepared 98 records (train), rejected 7 (missing_image 3, malformed_json 2) -> out``."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in summary["rejected_by_reason"].items())
    rejected = f"rejected {summary['rejected']}" + (f" ({reasons})" if reasons else "")
    return f"prepared {summary['out']} records ({split}), {rejected} -> {out_dir}"
