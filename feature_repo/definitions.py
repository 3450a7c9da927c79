"""Feast objects of candlecast: the ``pair`` entity and, per configured timeframe, a parquet
source, the ``candle_features_<tf>`` view and the ``forecast_<tf>_v1`` service.

They are built by :func:`candlecast.featurestore.definitions` from the same feature list the
models use; this module exposes them by name for ``feast apply`` / ``feast ui``.
"""

from candlecast.config import load_pairs
from candlecast.featurestore import definitions

_defs = definitions([p.timeframe for p in load_pairs().pairs])

pair = _defs.entity
for _obj in [*_defs.sources, *_defs.views, *_defs.services]:
    globals()[_obj.name] = _obj
