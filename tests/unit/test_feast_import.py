"""Feast is imported without typeguard's run-time instrumentation, which re-parses and
recompiles every decorated Feast module at import (most of ``import feast``'s CPU time, in every
process that reads or writes features)."""

import subprocess
import sys

from tests.helpers import REPO

#: Whether Feast is instrumented: typeguard's memo in a decorated Feast method's code.
INSTRUMENTED = (
    "import feast.feature_view as fv; "
    "print('TypeCheckMemo' in fv.FeatureView.__init__.__code__.co_names)"
)
#: Whether Feast's filter is set: every DeprecationWarning once, for the whole process.
FILTERS = (
    "import warnings; "
    "print(any(f[0] == 'once' and f[2] is DeprecationWarning for f in warnings.filters))"
)

#: Feast imported as candlecast reads features.
THROUGH_CANDLECAST = "from candlecast.features import online; online.repo_config(); "


def answer(prelude: str, question: str) -> str:
    """What ``question`` (:data:`INSTRUMENTED` or :data:`FILTERS`) prints last after
    ``prelude``, in a fresh interpreter (which must exit cleanly)."""
    done = subprocess.run(
        [sys.executable, "-c", prelude + question],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_feast_read_through_candlecast_is_not_instrumented():
    assert answer(THROUGH_CANDLECAST, INSTRUMENTED) == "False"


def test_a_bare_feast_import_is_instrumented():
    """The check above can fail: Feast on its own is instrumented."""
    assert answer("", INSTRUMENTED) == "True"


def test_the_process_airflow_forks_tasks_from_preloads_feast_uninstrumented_and_skops():
    """What every forked task inherits (``candlecast.orchestration.preload``): Feast without
    the instrumentation, and skops, whose import costs seconds in such a process."""
    prelude = (
        "import sys; from candlecast.orchestration.preload import preload; "
        "done = preload(['airflow', 'scheduler']); "
        "assert 'feast' in done and 'skops.io' in sys.modules, done; "
        # every task parses the DAG file: what it builds the DAGs with is inherited too
        "assert 'candlecast.orchestration.monitor_dag' in done, done; "
    )
    assert answer(prelude, INSTRUMENTED) == "False"


def test_feast_read_through_candlecast_leaves_the_process_warning_filters_alone():
    """Feast, on import, shows every DeprecationWarning once for the whole process (a filter
    in front of all others, pytest's and a user's included); candlecast imports it without."""
    assert answer(THROUGH_CANDLECAST, FILTERS) == "False"


def test_a_bare_feast_import_sets_its_filter():
    """The check above can fail: Feast on its own sets the filter."""
    assert answer("import feast; ", FILTERS) == "True"
