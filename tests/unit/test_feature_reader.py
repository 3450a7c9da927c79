"""The one parser of BentoML dependency addresses (``BENTOML_RUNNER_MAP`` values), and which
readers report facts of a feature reader process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from candlecast.names import Stream
from candlecast.serving.feature_reader import (
    DependencyAddress,
    FactsReader,
    RemoteReader,
    parse_address,
)


def test_tcp_address_gives_its_port_and_netloc() -> None:
    assert parse_address("tcp://127.0.0.1:8123") == DependencyAddress(
        netloc="127.0.0.1:8123", port=8123
    )


def test_file_address_gives_the_unquoted_socket_path() -> None:
    address = parse_address("file:///tmp/bento%20runs/feature%2Dreader.sock")
    assert address == DependencyAddress(socket="/tmp/bento runs/feature-reader.sock")
    assert address.port is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8123", "127.0.0.1:8123", "unix:///tmp/a.sock"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a BentoML dependency address"):
        parse_address(url)


def test_only_a_reader_with_facts_is_a_facts_reader() -> None:
    def in_process(stream: Stream, columns: Sequence[str]) -> dict[str, Any]:
        return {}

    remote = RemoteReader("tcp://127.0.0.1:9", timeout_s=0.1)  # built without connecting
    assert isinstance(remote, FactsReader)
    assert not isinstance(in_process, FactsReader)
