"""The one parser of BentoML dependency addresses (``BENTOML_RUNNER_MAP`` values)."""

from __future__ import annotations

import pytest

from candlecast.serving.feature_reader import DependencyAddress, parse_address


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
