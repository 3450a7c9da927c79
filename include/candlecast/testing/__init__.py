"""Test doubles that are real servers, for tests and benchmarks: a local exchange that speaks
Binance's REST API with faults on demand. No production module imports this package (an
import-linter contract)."""
