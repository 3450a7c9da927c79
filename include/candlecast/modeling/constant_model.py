"""A constant baseline's MLflow pyfunc, logged as code ("models from code"): its value comes
from the logged model config, so nothing is cloudpickled."""

from mlflow.models import set_model

from candlecast.modeling.registry import ConstantPyfunc

set_model(ConstantPyfunc())
