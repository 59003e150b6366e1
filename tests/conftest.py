"""Fixtures shared by the test modules: a dev chain on LevelDB, a running dev node, two chain services."""

from __future__ import annotations

import pytest

from tests.helpers.chain import TestChain
from tests.helpers.chain_nodes import author_and_follower
from tests.helpers.dev_node import RunningNode


@pytest.fixture
def chain(tmp_path):
    """A dev chain on a real LevelDB in tmp_path with a fake clock (tests.helpers.chain), closed after."""
    test_chain = TestChain(tmp_path / "db")
    yield test_chain
    test_chain.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A --dev node authoring 1 s slots with RPC on a free port, one per test module, past block 1."""
    with RunningNode(tmp_path_factory.mktemp("node")) as running:
        running.wait_for_block(1)
        yield running


@pytest.fixture
def nodes(tmp_path):
    """An author and a follower chain service on one fake clock (tests.helpers.chain_nodes), closed after."""
    author, follower = author_and_follower(tmp_path)
    yield author, follower
    author.close()
    follower.close()
