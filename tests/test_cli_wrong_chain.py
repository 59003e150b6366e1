"""Subcommands opened on the wrong chain of a base path say which chain they opened, that it holds
nothing, and which chains do exist there: one line, exit code 2, and nothing written. The node itself,
started without --dev or --chain on a base path that holds only another chain, refuses the same way
rather than create a new chain beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from node.chain_setup import ChainChoiceError, ChainPaths, check_not_a_silent_new_chain, load_chain_spec
from tests.helpers.chain import DEV_KEYS, TestChain
from tests.helpers.processes import gradchain

DEV = load_chain_spec(None, dev=True)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dev_base(tmp_path_factory) -> Path:
    """A base path holding only a --dev chain with three blocks (one transfer)."""
    base = tmp_path_factory.mktemp("base")
    chain = TestChain(ChainPaths(base, DEV.chain_id).database, DEV)
    chain.author_block([chain.transfer(DEV_KEYS["Alice"], DEV_KEYS["Bob"].public, 10**12)])
    chain.author_block()
    chain.author_block()
    chain.close()
    return base


def local_database(base: Path) -> Path:
    return base / "chains" / "gradchain_local" / "db"


def names_the_chains(line: str) -> None:
    assert "chain gradchain_local" in line  # the chain it opened
    assert "chain gradchain_dev (select it with --dev)" in line  # the one that exists


def test_export_blocks_of_a_dev_base_path_without_dev_names_both_chains(dev_base, tmp_path):
    line = one_line_error(gradchain("export-blocks", "--base-path", str(dev_base), str(tmp_path / "out.bin")))
    names_the_chains(line)
    assert "holds no blocks" in line
    assert not local_database(dev_base).exists() and not (tmp_path / "out.bin").exists()


def test_export_blocks_with_dev_works_on_the_same_base_path(dev_base, tmp_path):
    out = tmp_path / "out.bin"
    result = gradchain("export-blocks", "--dev", "--base-path", str(dev_base), str(out))
    assert result.returncode == 0, result.stderr
    assert "exported blocks 1..3" in result.stderr


def test_check_block_on_the_wrong_chain(dev_base):
    line = one_line_error(gradchain("check-block", "--base-path", str(dev_base), "2"))
    names_the_chains(line)
    assert not local_database(dev_base).exists()


def test_purge_chain_of_a_chain_that_is_not_there_deletes_nothing_and_says_what_is(dev_base):
    line = one_line_error(gradchain("purge-chain", "--base-path", str(dev_base), "-y"))
    names_the_chains(line)
    assert "nothing was deleted" in line
    assert ChainPaths(dev_base, DEV.chain_id).database.is_dir()


def test_import_blocks_of_another_chain_is_refused_before_anything_is_written(dev_base, tmp_path):
    blocks = tmp_path / "dev.bin"
    assert gradchain("export-blocks", "--dev", "--base-path", str(dev_base), str(blocks)).returncode == 0
    other = tmp_path / "other"
    line = one_line_error(gradchain("import-blocks", "--base-path", str(other), str(blocks)))
    assert "block #1, the file's first, does not build on chain gradchain_local" in line
    assert f"no other chain exists under {other}" in line
    assert not local_database(other).exists()


def test_an_empty_dev_chain_says_it_holds_only_its_genesis(tmp_path):
    TestChain(ChainPaths(tmp_path, DEV.chain_id).database, DEV).close()
    line = one_line_error(gradchain("export-blocks", "--dev", "--base-path", str(tmp_path), str(tmp_path / "o")))
    assert "chain gradchain_dev (Development)" in line and "holds no blocks but its genesis" in line
    assert "no other chain exists" in line


def test_a_node_without_dev_on_a_dev_only_base_path_refuses_to_create_another_chain(dev_base):
    line = one_line_error(gradchain("--base-path", str(dev_base), "--no-network", "--no-rpc", "--no-prometheus"))
    names_the_chains(line)
    assert "no --dev or --chain given: this would create a new chain gradchain_local" in line
    assert "--chain " in line and line.rstrip().endswith("genesis.json")  # how to create it after all
    assert not (dev_base / "chains" / "gradchain_local").exists()  # nothing written: no database, no node key


def test_a_node_creates_the_default_chain_when_asked_or_on_an_empty_base_path(dev_base, tmp_path):
    default = load_chain_spec(None, dev=False)
    check_not_a_silent_new_chain(ChainPaths(dev_base, default.chain_id), default, chain_given=True)  # --chain
    check_not_a_silent_new_chain(ChainPaths(tmp_path, default.chain_id), default, chain_given=False)  # empty
    check_not_a_silent_new_chain(ChainPaths(dev_base, DEV.chain_id), DEV, chain_given=True)  # --dev, its own
    with pytest.raises(ChainChoiceError, match="gradchain_dev"):
        check_not_a_silent_new_chain(ChainPaths(dev_base, default.chain_id), default, chain_given=False)
