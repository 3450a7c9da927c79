"""Modeling: model kinds (plug-ins), training on point-in-time features, the promotion gate
around MLflow's registry, and ONNX export. Imports evaluation, features, data and the core
modules; never serving, monitoring or orchestration."""
