"""candlecast: forecasts crypto prices for every configured trading pair."""

__version__ = "0.1.0"
