"""Candle data: sources (replay files, live exchanges through ccxt), history import, the
partitioned stores, validation with Great Expectations, gaps and resampling.

The lowest stage layer: it imports only the core modules (settings, config, names, errors,
timeframes), never features, models, serving or orchestration.
"""
