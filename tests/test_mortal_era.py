"""Mortal transactions against a real dev node: the wallet and the task tools sign with a mortal
era by default, and a reaped-then-refunded account's old transfer cannot be replayed, inside its era
(the re-created account's nonce starts at its position in the chain, past every old nonce), after
it, or when it was immortal."""

from __future__ import annotations

import time

import pytest

from rpc.client import RpcCallError
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from runtime.types import IMMORTAL
from scripts import wallet
from scripts._common import DEFAULT_ERA_PERIOD, CliError, signing_era
from scripts._tasks import ChainAccount
from tests.helpers.chain import DEV_KEYS

GRAD = 10**12
CHARLIE = DEV_KEYS["Charlie"]
SHORT_PERIOD = 4  # the runtime's least period: the test waits it out in a few 1 s blocks


def address(public: bytes) -> str:
    return crypto.encode_address(public, 42)


def wait_until(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def included(node, transaction_hash: bytes, first: int) -> int:
    """The number of the block holding the transaction (waits for it)."""
    def find():
        best = node.client.header().number
        for number in range(first, best + 1):
            block = node.client.block(node.client.block_hash(number))
            if any(x.hash == transaction_hash for x in block.extrinsics):
                return number
        return None
    return wait_until(find, f"transaction 0x{transaction_hash.hex()[:12]} in a block")


def empty_and_refund(node, victim: crypto.Keypair, era_period: int | None, *,
                     wait_out_the_era: bool = True) -> tuple[bytes, int]:
    """Fund `victim`, let it send everything away (its account is reaped), maybe wait until its
    transfer's era (if mortal) has passed, and refund it; returns the signed transfer's bytes and its block."""
    charlie = ChainAccount(node.client, CHARLIE)
    start = node.client.header().number
    included(node, charlie.send(balances.transfer(victim.public, 5 * GRAD)), start)
    assert node.client.account(address(victim.public)).free == 5 * GRAD
    era, birth_hash = signing_era(node.client, era_period)
    nonce = node.client.next_index(address(victim.public))
    assert nonce > 0  # a new account starts at its position in the chain, not at 0
    # all but about two fees: what is left after the fee is below the existential deposit, so it is reaped
    probe = sign_extrinsic(victim, balances.transfer(CHARLIE.public, 5 * GRAD), nonce=nonce,
                           genesis_hash=node.client.genesis_hash(), era=era, birth_hash=birth_hash)
    fee = node.client.query_fee(probe)
    transfer = sign_extrinsic(victim, balances.transfer(CHARLIE.public, 5 * GRAD - 2 * fee), nonce=nonce,
                              genesis_hash=node.client.genesis_hash(), era=era, birth_hash=birth_hash)
    block = included(node, node.client.submit(transfer), start)
    assert node.client.account(address(victim.public)).free == 0, "the account was reaped"
    if wait_out_the_era and not era.is_immortal:
        last_valid = era.birth + era.period - 1
        wait_until(lambda: node.client.header().number >= last_valid, f"block {last_valid}")
    refund_from = node.client.header().number
    included(node, charlie.send(balances.transfer(victim.public, 10 * GRAD)), refund_from)
    return transfer.encoded, block


def test_a_reaped_and_refunded_accounts_old_mortal_transfer_is_refused_on_replay(node):
    victim = crypto.keypair_from_uri("//ReplayMortal")
    old_transfer, _ = empty_and_refund(node, victim, SHORT_PERIOD)
    with pytest.raises(RpcCallError) as refused:
        node.client.call("author_submitExtrinsic", "0x" + old_transfer.hex())
    assert refused.value.rpc_code == 1010
    assert "expired" in refused.value.message or "too old" in refused.value.message
    assert node.client.account(address(victim.public)).free == 10 * GRAD  # the refund is untouched


def test_inside_its_era_a_reaped_and_refunded_accounts_old_transfer_is_refused_and_a_fresh_one_works(node):
    victim = crypto.keypair_from_uri("//ReplayInsideTheEra")
    old_transfer, block = empty_and_refund(node, victim, DEFAULT_ERA_PERIOD, wait_out_the_era=False)
    assert node.client.header().number < block + DEFAULT_ERA_PERIOD - 6  # the old transfer's era is still open
    with pytest.raises(RpcCallError) as refused:
        node.client.call("author_submitExtrinsic", "0x" + old_transfer.hex())
    assert refused.value.rpc_code == 1010 and "is used" in refused.value.message
    assert node.client.account(address(victim.public)).free == 10 * GRAD
    start = node.client.header().number
    included(node, ChainAccount(node.client, victim).send(balances.transfer(CHARLIE.public, GRAD)), start)
    assert node.client.account(address(victim.public)).free < 9 * GRAD  # the fresh transfer went through


def test_an_immortal_transfer_is_not_replayed_after_reaping_either(node):
    victim = crypto.keypair_from_uri("//ReplayImmortal")
    old_transfer, _ = empty_and_refund(node, victim, None)
    with pytest.raises(RpcCallError) as refused:
        node.client.call("author_submitExtrinsic", "0x" + old_transfer.hex())
    assert refused.value.rpc_code == 1010 and "is used" in refused.value.message
    assert node.client.account(address(victim.public)).free == 10 * GRAD  # the refund is untouched


def test_the_task_tools_sign_mortal_by_default(node):
    charlie = ChainAccount(node.client, CHARLIE)
    start = node.client.header().number
    transaction_hash = charlie.send(balances.transfer(crypto.keypair_from_uri("//Mortal1").public, 2 * GRAD))
    block = node.client.block(node.client.block_hash(included(node, transaction_hash, start)))
    era = next(x for x in block.extrinsics if x.hash == transaction_hash).signed.era
    assert era.period == DEFAULT_ERA_PERIOD and start - 6 <= era.birth <= block.header.number - 1


def test_the_wallet_signs_mortal_by_default_and_immortal_only_when_asked_with_a_warning(node, tmp_path, capsys):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a passphrase\n")
    base = ["--url", node.url, "--wallet-dir", str(tmp_path / "keys"), "--passphrase-file", str(passphrase)]
    assert wallet.main([*base, "import", "charlie", "--uri", "//Charlie"]) == 0
    capsys.readouterr()
    eras = []
    for extra in ([], ["--era-period", "16"], ["--immortal"]):
        assert wallet.main([*base, "transfer", "charlie", address(crypto.keypair_from_uri("//Mortal2").public),
                            "1GRAD", *extra]) == 0
        out, err = capsys.readouterr()
        transaction_hash = bytes.fromhex(out.split("submitted 0x")[1].split()[0])
        block = node.client.block(node.client.block_hash(included(node, transaction_hash, 1)))
        eras.append((next(x for x in block.extrinsics if x.hash == transaction_hash).signed.era, out, err))
    (default, out, _), (sixteen, _, _), (immortal, _, warned) = eras
    assert default.period == DEFAULT_ERA_PERIOD and "valid until block #" in out
    assert sixteen.period == 16
    assert immortal == IMMORTAL and "warning: --immortal" in warned


def test_a_bad_era_period_is_one_line_and_sends_nothing(node, tmp_path, capsys):
    with pytest.raises(CliError):
        signing_era(node.client, 3)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a passphrase\n")
    base = ["--url", node.url, "--wallet-dir", str(tmp_path / "keys"), "--passphrase-file", str(passphrase)]
    assert wallet.main([*base, "import", "charlie", "--uri", "//Charlie"]) == 0
    nonce = node.client.next_index(address(CHARLIE.public))
    assert wallet.main([*base, "transfer", "charlie", "charlie", "1GRAD", "--era-period", "100000"]) == 2
    assert "bad --era-period" in capsys.readouterr().err
    assert node.client.next_index(address(CHARLIE.public)) == nonce
