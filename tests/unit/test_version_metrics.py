"""A version's own holdout figures: a baseline registered on the challenger's run shows its
own scores, not the losing challenger's, and persistence shows no directional accuracy."""

from candlecast.modeling.registry import holdout_metrics

RUN = {
    "holdout_rmse": 0.0081,
    "holdout_mae": 0.0055,
    "holdout_directional_accuracy": 0.549,
    "persistence_rmse": 0.0080,
    "persistence_mae": 0.0054,
    "persistence_directional_accuracy": 0.0,
    "drift_rmse": 0.00805,
    "drift_directional_accuracy": 0.51,
}


def test_a_learned_kind_shows_its_holdout_metrics():
    assert holdout_metrics(RUN, "lightgbm") == {
        "holdout_rmse": 0.0081,
        "holdout_mae": 0.0055,
        "holdout_directional_accuracy": 0.549,
    }


def test_persistence_shows_its_own_scores_and_no_direction():
    assert holdout_metrics(RUN, "persistence") == {"holdout_rmse": 0.0080, "holdout_mae": 0.0054}


def test_another_baseline_shows_its_own_scores():
    assert holdout_metrics(RUN, "drift") == {
        "holdout_rmse": 0.00805,
        "holdout_directional_accuracy": 0.51,
    }
