"""Runnable examples (docs/custom_losses.md); importable as `examples.<module>` from the
project root, e.g. `--loss value=examples.custom_losses:huber_value`."""
