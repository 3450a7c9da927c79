"""Tree thresholds that make an ONNX tree ensemble split float32 inputs as LightGBM does.

LightGBM splits numerical features at double thresholds, often the midpoint of two adjacent
training values. ONNX's tree ensembles hold float32 thresholds, and onnxmltools rounds each
to the *nearest* float32: a midpoint between two float32 values one step apart rounds up to
the larger one, which the ONNX graph then sends the other way (a whole leaf apart: issue 20
measured 2.06e-05 absolute, 2.6 % relative on one window). The model's inputs are float32
(:func:`~candlecast.modeling.kinds.base.model_inputs`), so the comparison can be made exact:
for a float32 ``v``, ``v <= t`` holds exactly when ``v <= floor32(t)``, and ``v < t`` when
``v < ceil32(t)`` (likewise ``>`` with floor, ``>=`` with ceil). onnxmltools has no option for
this (its ``split`` option only regroups the float32 sums of leaf values, and fails on small
ensembles in 1.16), so the converted graph's thresholds are replaced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_ENSEMBLES = ("TreeEnsembleRegressor", "TreeEnsembleClassifier")
#: Comparison modes whose exact float32 threshold rounds down (the others round up).
_FLOOR = {"BRANCH_LEQ", "BRANCH_GT"}
_CEIL = {"BRANCH_LT", "BRANCH_GTE"}


def exact_float32(threshold: float, mode: str) -> float:
    """The float32 threshold that splits float32 inputs as ``threshold`` (a double) does."""
    nearest = np.float32(threshold)
    if mode in _FLOOR and float(nearest) > threshold:
        nearest = np.nextafter(nearest, np.float32(-np.inf))
    elif mode in _CEIL and float(nearest) < threshold:
        nearest = np.nextafter(nearest, np.float32(np.inf))
    return float(nearest)


def _booster_thresholds(dump: dict[str, Any]) -> dict[tuple[int, int, float], set[float]]:
    """LightGBM's double thresholds by (tree, feature, nearest float32): how the converted
    graph's nodes find theirs (its node order differs from the dump's)."""
    found: dict[tuple[int, int, float], set[float]] = {}
    for tree in dump["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_index" not in node or not isinstance(node["threshold"], int | float):
                continue
            threshold = float(node["threshold"])
            key = (int(tree["tree_index"]), int(node["split_feature"]), _f32(threshold))
            found.setdefault(key, set()).add(threshold)
            stack += [node["left_child"], node["right_child"]]
    return found


def _f32(value: float) -> float:
    return float(np.float32(value))


def make_exact(converted: Any, booster: Any) -> int:
    """Replace the thresholds of ``converted``'s tree ensembles (onnxmltools' graph of the
    LightGBM ``booster``) by their exact float32 values; returns how many changed. A node
    whose double threshold cannot be told apart (two in one tree and feature that round to
    the same float32 but not the same way) keeps the converter's value."""
    doubles = _booster_thresholds(booster.dump_model())
    changed = 0
    for node in converted.graph.node:
        if node.op_type not in _ENSEMBLES:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            continue
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        values = list(attrs["nodes_values"].floats)
        trees, features = attrs["nodes_treeids"].ints, attrs["nodes_featureids"].ints
        for i, mode in enumerate(modes):
            if mode == "LEAF":
                continue
            candidates = doubles.get((trees[i], features[i], _f32(values[i])), set())
            exact = {exact_float32(t, mode) for t in candidates}
            if len(exact) == 1 and (value := exact.pop()) != _f32(values[i]):
                values[i], changed = value, changed + 1
        del attrs["nodes_values"].floats[:]
        attrs["nodes_values"].floats.extend(values)
    return changed
