"""Prepared datasets, image loading and the multimodal collator that feeds the policy."""

from mhpo_vl.data.collator import IGNORE_INDEX, PromptBatch, PromptCollator, load_template
from mhpo_vl.data.dataset import PromptDataset, load_records
from mhpo_vl.data.images import load_image

__all__ = ["IGNORE_INDEX", "PromptBatch", "PromptCollator", "PromptDataset", "load_image", "load_records",
           "load_template"]
