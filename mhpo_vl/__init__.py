"""mhpo-vl: RL fine-tuning of vision-language models with MHPO."""

__version__ = "0.1.0"
