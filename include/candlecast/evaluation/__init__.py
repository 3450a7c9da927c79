"""Evaluation: how forecasts are split in time and scored. Pure functions of numbers and
frames, below the model kinds, so training, the promotion gate and (later) walk-forward
backtests all score the same way."""
