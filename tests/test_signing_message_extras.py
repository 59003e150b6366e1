"""signing_message keeps the payload's bytes after the nonce per (tip, era, birth hash, genesis hash,
runtime version): a message is right whichever of those changes between two messages.

Runs many messages that share all but one of those in a row (what a random draw
rarely gives), each against the plain SigningPayload encoding."""

from __future__ import annotations

import itertools

from runtime.executive import VERSION, RuntimeVersion, signing_message, signing_message_reference
from runtime.pallets import balances
from runtime.types import IMMORTAL, Era


def test_every_input_of_the_cached_extras_changes_the_message():
    call = balances.transfer(b"\x01" * 32, 10**9)
    other_version = RuntimeVersion(VERSION.spec_name, VERSION.impl_name, VERSION.spec_version + 1,
                                   VERSION.transaction_version)
    other_tx_version = RuntimeVersion(VERSION.spec_name, VERSION.impl_name, VERSION.spec_version,
                                      VERSION.transaction_version + 1)
    tips = (0, 1, 2**64, 5)
    eras = (IMMORTAL, Era(0, 4), Era(1, 4), Era(0, 8))
    hashes = (b"\x02" * 32, b"\x03" * 32)
    versions = (VERSION, other_version, other_tx_version)
    messages = set()
    for round_ in range(2):  # the second round reads every extras from the cache
        for tip, era, genesis, birth, version, nonce in itertools.product(tips, eras, hashes, hashes, versions, (0, 7)):
            message = signing_message(call, nonce, tip, era, genesis, birth, version)
            assert message == signing_message_reference(call, nonce, tip, era, genesis, birth, version)
            messages.add(message)
    assert len(messages) == len(tips) * len(eras) * len(hashes) ** 2 * len(versions) * 2
