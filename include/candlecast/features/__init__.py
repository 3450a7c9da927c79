"""Features: one function computes them for training, backfills and serving alike
(:mod:`.engineering`), and the Feast store that keeps them offline and online
(:mod:`.featurestore`). Imports the data layer and the core modules only."""
