"""Serving: deploy exported champions into the BentoML model store and answer forecasts from
them (:mod:`.forecaster`, used by the thin BentoML service in ``serving/service.py``).
Imports modeling, features, data and the core modules; never monitoring or orchestration."""
