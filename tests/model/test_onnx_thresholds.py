"""LightGBM's ONNX graph splits float32 inputs exactly as LightGBM does.

LightGBM splits between two training values at their double midpoint; onnxmltools rounds it
to the nearest float32, which for two values one float32 step apart is the larger value, so
ONNX sent that value down the other branch (a parity failure of a whole leaf). Real LightGBM
fits on such values, converted by the converter the kinds use.
"""

from __future__ import annotations

import numpy as np
import pytest

from candlecast.modeling.kinds.lightgbm_kind import convert
from candlecast.modeling.kinds.onnx_thresholds import exact_float32
from candlecast.modeling.onnx_export import parity, run_onnx


def adjacent_values(start: float, rows: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """A feature holding two float32 values one step apart that decide the target."""
    rng = np.random.default_rng(1)
    low = np.float32(start)
    high = np.nextafter(low, np.float32(np.inf))
    column = np.where(rng.random(rows) < 0.5, low, high).astype(np.float32)
    x = np.c_[column, rng.normal(size=rows).astype(np.float32)].astype(np.float64)
    return x, (column == high).astype(np.int64)


@pytest.mark.parametrize("start", [1.0, 0.7, 3.3, -2.5])
def test_a_regressor_split_between_adjacent_float32_values_keeps_parity(start):
    import lightgbm as lgb

    x, up = adjacent_values(start)
    y = np.where(up == 1, 0.01, -0.01)
    model = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1).fit(x, y)
    threshold = model.booster_.dump_model()["tree_info"][0]["tree_structure"]["threshold"]
    assert float(x[:, 0].min()) < threshold < float(x[:, 0].max())  # between the two
    diff, relative = parity(run_onnx(convert(model, 2).SerializeToString(), x), model.predict(x))
    assert diff < 1e-8 and relative < 1e-6


def test_a_classifier_split_between_adjacent_float32_values_keeps_parity():
    import lightgbm as lgb
    import onnxruntime as ort

    x, up = adjacent_values(1.0)
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(x, up)
    session = ort.InferenceSession(convert(model, 2).SerializeToString())
    outputs = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})
    probabilities = next(o for o in outputs if getattr(o, "ndim", 0) == 2)
    assert np.abs(probabilities[:, 1] - model.predict_proba(x)[:, 1]).max() < 1e-6


@pytest.mark.parametrize(
    ("threshold", "mode", "expected"),
    [
        (1.000000059604645, "BRANCH_LEQ", 1.0),  # midpoint: nearest would be 1.0000001
        (1.000000059604645, "BRANCH_GT", 1.0),
        (1.000000059604645, "BRANCH_LT", float(np.nextafter(np.float32(1), np.float32(2)))),
        (1.000000059604645, "BRANCH_GTE", float(np.nextafter(np.float32(1), np.float32(2)))),
        (0.5, "BRANCH_LEQ", 0.5),  # a float32 value stays
        (-1.000000059604645, "BRANCH_LEQ", float(np.nextafter(np.float32(-1), np.float32(-2)))),
    ],
)
def test_exact_thresholds_split_every_float32_input_the_same_way(threshold, mode, expected):
    assert exact_float32(threshold, mode) == expected
    compare = {
        "BRANCH_LEQ": np.less_equal,
        "BRANCH_LT": np.less,
        "BRANCH_GT": np.greater,
        "BRANCH_GTE": np.greater_equal,
    }[mode]
    near = np.float32(threshold)
    inputs = np.array(
        [np.nextafter(near, np.float32(-np.inf)), near, np.nextafter(near, np.float32(np.inf))],
        np.float32,
    )
    native = compare(inputs.astype(np.float64), threshold)
    assert (compare(inputs, np.float32(expected)) == native).all()
