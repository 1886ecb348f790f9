"""Source adapters by name (the subcommands of ``python -m data_prep``)."""

from __future__ import annotations

from data_prep.sources.common import Source, SourceData


def all_sources() -> dict[str, Source]:
    """name -> Source, in the order shown by ``--help``."""
    from data_prep.sources import benchmarks, files, hf, text_tasks
    from data_prep.synthetic import cli as synthetic

    sources = [*files.SOURCES, *hf.SOURCES, *benchmarks.SOURCES, synthetic.SOURCE, *text_tasks.SOURCES]
    return {source.name: source for source in sources}


__all__ = ["Source", "SourceData", "all_sources"]
