"""freqtrade's Arrow (feather) candle files: ``date, open, high, low, close, volume``."""

from __future__ import annotations

import pandas as pd
import pyarrow.feather as feather

from candlecast.data.importers._common import Sample, candle_frame, read_arrow

NAME = "freqtrade-feather"


def detect(sample: Sample) -> bool:
    """Arrow magic bytes, or a feather / arrow file name."""
    name = sample.path.name.lower()
    return sample.magic == "feather" or name.endswith((".feather", ".arrow", ".ftr"))


def read(sample: Sample) -> pd.DataFrame:
    raw = read_arrow(sample.path, sample.payload, feather.read_table, "feather")
    return candle_frame(sample.path, raw, "date")
