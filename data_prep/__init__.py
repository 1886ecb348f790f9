"""data_prep: turn image-text datasets into validated mhpo-vl records (``python -m data_prep --help``).

Library use::

    from data_prep import PrepareOptions, prepare
    summary = prepare(candidates, PrepareOptions(out_dir=Path("data/out"), split="train"))
"""

from data_prep.errors import REASONS, DataPrepError, Reject
from data_prep.images import ImageOptions, load_image
from data_prep.pipeline import PrepareOptions, prepare
from data_prep.records import ANSWER_TYPES, Candidate, normalise_record

__all__ = ["ANSWER_TYPES", "REASONS", "Candidate", "DataPrepError", "ImageOptions", "PrepareOptions", "Reject",
           "load_image", "normalise_record", "prepare"]
