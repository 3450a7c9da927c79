"""The demo's forecast table: every number whole at 80 columns (nothing cut with "…")."""

from __future__ import annotations

from rich.console import Console

from candlecast.cli.demo import forecast_table

MODEL = {"kind": "persistence", "version": "12", "baseline": True}
#: An ETH/BTC answer: small prices, so every band is long.
ANSWER = {
    "pair": "ETH/BTC",
    "exchange": "binance",
    "timeframe": "5m",
    "last_close": 0.0160877,
    "feature_timestamp": "2022-03-01T03:55:00+00:00",
    "forecast_for": "2022-03-01T04:00:00+00:00",
    "predicted_price": 0.0160877,
    "predicted_return": 0.0,
    "interval": {"price": [0.0160231, 0.0161523]},
    "model": {"kind": "persistence", "version": "12"},
    "targets": [
        {
            "target": "return",
            "horizon": 24,
            "forecast_for": "2022-03-01T06:00:00+00:00",
            "price": 0.0160877,
            "log_return": 0.0,
            "intervals": {"levels": {"0.9": {"price": [0.0158412, 0.0163389]}}},
            "model": MODEL,
        },
        {
            "target": "volatility",
            "horizon": 24,
            "forecast_for": "2022-03-01T06:00:00+00:00",
            "sigma": 0.0123,
            "annualized_volatility": 0.61,
            "model": {"kind": "lightgbm", "version": "3", "baseline": False},
        },
    ],
}


def test_every_number_is_whole_at_80_columns():
    console = Console(width=80, record=True, color_system=None)
    console.print(forecast_table(ANSWER))
    text = console.export_text()
    assert "…" not in text
    flat = "".join(text.split())  # a folded cell reads whole without its line breaks' spaces
    for number in ("0.016023", "0.016152", "0.015841", "0.016339", "persistence", "(baseline)"):
        assert number in flat.replace("│", ""), number
    assert max(len(line) for line in text.splitlines()) <= 80
