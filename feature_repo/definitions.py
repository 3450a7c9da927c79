"""Feast objects of candlecast: the ``market`` entity and, per configured timeframe, a parquet
source, the ``candle_features_<tf>`` view and the ``forecast_<tf>_v1`` service.

They are built by :func:`candlecast.features.featurestore.definitions` from the same feature
list the models use; this module exposes them by name for ``feast apply`` / ``feast ui``.
"""

from candlecast.features.featurestore import definitions
from candlecast.orchestration.stages import configured_timeframes

_defs = definitions(configured_timeframes())

market = _defs.entity
for _obj in [*_defs.sources, *_defs.views, *_defs.services]:
    globals()[_obj.name] = _obj
