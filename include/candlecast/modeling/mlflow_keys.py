"""Every MLflow key the platform writes or reads: tags, params, artifacts and aliases.

One name per key, so that a rename is one edit and a typo is an ``AttributeError``, not a run
that silently misses a tag. Plain strings only: importing this module imports no MLflow (the
service and the DAG files read these names too).
"""

from __future__ import annotations

# -- registered model aliases --------------------------------------------------------------------
CHAMPION = "champion"
CHALLENGER = "challenger"

# -- artifacts -----------------------------------------------------------------------------------
#: The holdout frame a kind's run scored on (features, target, forecasts).
HOLDOUT_ARTIFACT = "holdout/holdout.parquet"
#: The gate's decision, logged on the challenger's run.
DECISION_ARTIFACT = "promotion/decision.json"
#: The model card (:mod:`candlecast.modeling.card`) of a kind's run.
CARD_ARTIFACT = "card.json"
FEATURE_IMPORTANCE_ARTIFACT = "feature_importance.json"
HOLDOUT_PLOT_ARTIFACT = "plots/holdout_forecast_vs_realized.png"
IMPORTANCE_PLOT_ARTIFACT = "plots/feature_importance.png"
#: Logged model names inside a kind's run: the served fit and the holdout fit.
MODEL_NAME, HOLDOUT_FIT_NAME = "model", "holdout_fit"

# -- run tags ------------------------------------------------------------------------------------
KIND = "kind"
#: The logged served model's URI: set last, it marks a kind's run complete (for reuse).
MODEL_URI = "model_uri"
INTERVAL_END = "interval_end"
FEATURE_SERVICE = "feature_service"
RUN_ROLE = "run.role"
PARENT_RUN_ID = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
LOG_MODEL_HISTORY = "mlflow.log-model"
GIT_COMMIT = "git.commit"
TRAINING_SIGNATURE = "training.signature"
TRAINING_KINDS = "training.kinds"
TRIGGER_REASON = "trigger.reason"
TRIGGER_REASON_REUSED = "trigger.reason.reused"
CHALLENGER_KIND = "challenger.kind"
CHALLENGER_RUN_ID = "challenger.run_id"
DATA_VALIDATED_STORE = "data.validated_store"
DATA_VERSION = "data.version"
DATA_PARTITIONS = "data.partitions"
DATA_MISSING_SHARE = "data.missing_share"
DATA_DVC_STAGE = "data.dvc_stage"
DATA_DVC_MD5 = "data.dvc_md5"
#: The close time of the last row a kind's served model was fitted on (for the MLflow UI; the
#: gate reads it from the model card, its ``holdout_end``).
DATA_LAST_EVENT = "data.last_event"
PROMOTION_PREFIX = "promotion."
PROMOTION_OUTCOME = "promotion.outcome"
PROMOTION_REASON = "promotion.reason"
PROMOTION_CHAMPION_VERSION = "promotion.champion_version"
PROMOTION_DRY_RUN = "promotion.dry_run"
PROMOTION_PARITY_FALLBACK = "promotion.parity_fallback"
GATE_DECISION = "gate.decision"
#: Tag of a baseline run naming the challenger run it was registered beside.
BASELINE_FOR_RUN = "baseline.for_run"

# -- model version tags --------------------------------------------------------------------------
VERSION_RUN_ID = "run_id"
CHAMPION_PREVIOUS = "champion.previous"
CHAMPION_SET_BY = "champion.set_by"
CHAMPION_REASON = "champion.reason"
ONNX_PARITY = "onnx_parity_max_abs_diff"

# -- run params ----------------------------------------------------------------------------------
FEATURES = "features"
WINDOW = "window"
SERVED_FIT = "served_fit"
TRAIN_ROWS = "train_rows"
HOLDOUT_ROWS = "holdout_rows"
TRAIN_START = "train_start"
HOLDOUT_START = "holdout_start"
HOLDOUT_END = "holdout_end"

# -- metrics -------------------------------------------------------------------------------------
#: A kind's own holdout scores are ``holdout_<score>``; a baseline's ``<baseline>_<score>``.
HOLDOUT_PREFIX = "holdout_"


def holdout_metric(score: str) -> str:
    """``holdout_rmse``: a kind's own holdout score named ``score``."""
    return f"{HOLDOUT_PREFIX}{score}"


# -- target runs (:mod:`candlecast.modeling.target_training`) ------------------------------------
TARGET = "target"
HORIZON = "horizon"
TARGET_KEY = "target.key"
TARGETS_SIGNATURE = "targets.signature"
#: Set last on a target's run: its registered version (marks the run complete, for reuse).
TARGET_VERSION = "target.version"
#: The losing learned challenger a target's run exported for the shadow (its version).
TARGET_CHALLENGER_VERSION = "target.challenger_version"

# -- evaluation and monitoring runs --------------------------------------------------------------
SOURCE = "source"
EVALUATION_ARTIFACT_DIR = "evaluation"
EVALUATION_REPORT_ARTIFACT = "evaluation/report.json"
MONITORING_ARTIFACT_DIR = "monitoring"
