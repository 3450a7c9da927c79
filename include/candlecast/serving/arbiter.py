"""``bentoml serve`` whose process manager takes orders from its owner only.

BentoML 1.4 runs the service's workers under a circus arbiter inside the ``bentoml serve``
process, and binds the arbiter's control endpoint (a ZeroMQ socket that lists, stops,
respawns and reconfigures the workers) and its event stream to TCP ports on 127.0.0.1
(``bentoml._internal.utils.circus.create_standalone_arbiter``). Circus asks for no key, so
anyone with a shell on the machine could ``circusctl --endpoint tcp://127.0.0.1:<port> stop``
the service. BentoML has no option for those endpoints.

:func:`main` runs BentoML's own command line with that one factory replaced by
:func:`private_arbiter`: the same arbiter with both endpoints on ``ipc://`` (Unix domain)
sockets in a fresh directory only its owner may enter (mode 0700), removed when the arbiter
stops. No TCP port is opened besides the service's own; the owner keeps ``circusctl
--endpoint ipc://<dir>/control``. ``candlecast serve``, the demo, the tests and the benches
start the service this way (:func:`candlecast.cli.embedded.bentoml_command`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Prefix of the arbiter's private socket directory (under the temporary directory: a Unix
#: socket's path must stay under 108 bytes, which a deep data directory would exceed).
SOCKET_DIR_PREFIX = "candlecast-circus-"
CONTROL, EVENTS = "control", "events"


def private_arbiter(watchers: list[Any], *, threaded: bool = False, **kwargs: Any) -> Any:
    """BentoML's standalone arbiter (same class, watchers, sockets and check delay) with its
    control and pub/sub endpoints on owner-only Unix sockets instead of TCP ports."""
    from bentoml._internal.utils import circus

    folder = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))  # mode 0700, ours
    arbiter_cls = circus.ThreadedArbiter if threaded else circus.Arbiter
    arbiter = arbiter_cls(
        watchers,
        endpoint=f"ipc://{folder / CONTROL}",
        pubsub_endpoint=f"ipc://{folder / EVENTS}",
        check_delay=kwargs.pop("check_delay", 10),  # BentoML's default (see its factory)
        **kwargs,
    )
    arbiter.exit_stack.callback(shutil.rmtree, folder, ignore_errors=True)
    return arbiter


def main() -> None:
    """``bentoml`` with :func:`private_arbiter` (arguments as for the ``bentoml`` command)."""
    from bentoml._internal.utils import circus
    from bentoml_cli.cli import cli

    # BentoML's servers import the factory from this module when they start, so replacing
    # the module's attribute reaches both the new-style and the legacy server
    circus.create_standalone_arbiter = private_arbiter
    sys.argv[0] = "bentoml"
    sys.exit(cli())


if __name__ == "__main__":
    main()
