"""Synthetic image tasks we own: rendered shapes, digit arithmetic, and easy-vqa (no downloads)."""
