"""``python -m data_prep inspect DIR``: counts, histograms and a contact sheet of a prepared directory."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from data_prep.errors import DataPrepError
from data_prep.reader import find_splits, iter_records

_MAX_SIZED_IMAGES = 2000


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``inspect`` subcommand."""
    parser.add_argument("dir", help="a prepared directory (output of a data_prep run)")
    parser.add_argument("--split", help="only this split (default: every split in the directory)")
    parser.add_argument("--out", help="where to write the PNGs and inspect.json (default: DIR/inspect)")
    parser.add_argument("--samples", type=int, default=12, help="records on the contact sheet (default: 12)")


def collect(out_dir: Path, splits: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Counts and length/size lists over the splits, and the first records for the contact sheet."""
    files = find_splits(out_dir)
    stats: dict[str, Any] = {"records": Counter(), "answer_type": Counter(), "source": Counter(),
                             "prompt_chars": [], "answer_chars": [], "image_sizes": [], "text_only": 0}
    samples: list[dict[str, Any]] = []
    for split in splits:
        if split not in files:
            raise DataPrepError(f"{out_dir} has no split {split!r} (found: {', '.join(files) or 'none'})")
        for record in iter_records(files[split]):
            stats["records"][split] += 1
            stats["answer_type"][record.get("answer_type", "?")] += 1
            stats["source"][record.get("source", "?")] += 1
            stats["prompt_chars"].append(len(record.get("prompt", "")))
            stats["answer_chars"].append(len(record.get("answer", "")))
            stats["text_only"] += not record.get("images")
            for rel in record.get("images", []):
                if len(stats["image_sizes"]) < _MAX_SIZED_IMAGES:
                    with Image.open(out_dir / rel) as image:
                        stats["image_sizes"].append(image.size)
            if len(samples) < 64:
                samples.append(record)
    return stats, samples


def plot_histograms(stats: dict[str, Any], path: Path) -> None:
    """Answer-type counts, prompt/answer length histograms and image side histograms in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    types = stats["answer_type"].most_common()
    axes[0, 0].bar([t for t, _ in types], [c for _, c in types], color="tab:blue")
    axes[0, 0].set_title("records by answer type")
    axes[0, 1].hist(stats["prompt_chars"], bins=30, color="tab:orange")
    axes[0, 1].set_title("prompt length (characters)")
    axes[1, 0].hist(stats["answer_chars"], bins=30, color="tab:green")
    axes[1, 0].set_title("answer length (characters)")
    sizes = stats["image_sizes"]
    if sizes:
        axes[1, 1].hist([[w for w, _ in sizes], [h for _, h in sizes]], bins=30, label=["width", "height"])
        axes[1, 1].legend()
    axes[1, 1].set_title(f"image sides in pixels ({len(sizes)} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet(samples: list[dict[str, Any]], out_dir: Path, path: Path, columns: int = 4) -> None:
    """A grid of records: first image (or 'text only') with the prompt and answer underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(samples) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, record in zip(axes.flat, samples):
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        images = record.get("images") or []
        if images:
            with Image.open(out_dir / images[0]) as image:
                ax.imshow(image.convert("RGB"), interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "text only", ha="center", va="center", color="gray")
        prompt = textwrap.shorten(record.get("prompt", ""), 120, placeholder=" ...")
        caption = "\n".join(textwrap.wrap(prompt, 34)[:4])
        answer = textwrap.shorten(record.get("answer", ""), 40, placeholder="...")
        ax.set_title(f"{record.get('id', '')} [{record.get('answer_type', '')}]", fontsize=8)
        ax.set_xlabel(f"{caption}\nanswer: {answer}", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_inspect(args: argparse.Namespace) -> int:
    """Print counts and write histograms.png, contact_sheet.png and inspect.json."""
    out_dir = Path(args.dir)
    splits = [args.split] if args.split else list(find_splits(out_dir))
    if not splits:
        raise DataPrepError(f"{out_dir} holds no <split>.jsonl or <split>.parquet")
    if args.samples < 0:
        raise DataPrepError(f"--samples must be >= 0, got {args.samples}")
    stats, samples = collect(out_dir, splits)
    report_dir = Path(args.out) if args.out else out_dir / "inspect"
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_histograms(stats, report_dir / "histograms.png")
    contact_sheet(samples[: args.samples], out_dir, report_dir / "contact_sheet.png")
    counts = {key: dict(stats[key]) for key in ("records", "answer_type", "source")}
    counts["text_only"] = stats["text_only"]
    (report_dir / "inspect.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    print(f"records: {dict(stats['records'])}; answer types: {dict(stats['answer_type'])}; "
          f"text only: {stats['text_only']}")
    print(f"wrote {report_dir / 'histograms.png'}, {report_dir / 'contact_sheet.png'}, {report_dir / 'inspect.json'}")
    return 0
