"""The demo watches the services it advertises: one that stops ends the demo, named."""

import subprocess

import pytest

from candlecast.cli.demo import _check_services
from tests.helpers import settings_in


def test_a_stopped_service_is_named_and_ends_the_demo(tmp_path):
    settings = settings_in(tmp_path)
    alive = subprocess.Popen(["sleep", "60"])
    stopped = subprocess.Popen(["sh", "-c", "exit 3"])
    stopped.wait()
    try:
        _check_services(settings, [alive, alive])  # both up: nothing to say
        with pytest.raises(RuntimeError, match=r"the prediction service exited with code 3"):
            _check_services(settings, [stopped, alive])
        with pytest.raises(RuntimeError, match=r"the MLflow UI exited .*mlflow\.log"):
            _check_services(settings, [alive, stopped])
    finally:
        alive.kill()
        alive.wait()
