"""How a run's signature checks are split between this process and the worker.

The first block of a run (or a block that arrives alone) is split evenly: this process
has nothing to execute meanwhile and would otherwise wait for the worker's share. A block
submitted while another's checks are queued gets the balanced share. The answer (the
lowest failing index) is the same whatever the split.
"""

from __future__ import annotations

import os

from consensus.signatures import SignatureVerifier, first_failure
from runtime import crypto


def checks(count: int, forged: int | None = None) -> list[tuple[bytes, bytes, bytes]]:
    keypair = crypto.Keypair.from_seed(b"\x07" * 32)
    made = []
    for i in range(count):
        message = os.urandom(32)
        signature = keypair.sign(message) if i != forged else b"\x01" * 64
        made.append((keypair.public, message, signature))
    return made


def test_a_block_with_nothing_queued_is_split_evenly_and_queued_ones_get_the_share():
    with SignatureVerifier(share=0.9) as verifier:
        first = verifier.submit(checks(100))
        assert first.split == 50  # the run's first block: both sides verify half
        second = verifier.submit(checks(100))
        assert second.split == 90  # overlaps this process executing the first block
        assert first.first_failure() == -1
        assert verifier.share == 0.9  # nothing was measured between two blocks' checks yet: kept
        third = verifier.submit(checks(100))
        assert third.split == round(100 * verifier.share)  # the second is still queued
        assert second.first_failure() == -1 and third.first_failure() == -1
        alone = verifier.submit(checks(100))
        assert alone.split == 50  # nothing queued again
        assert alone.first_failure() == -1


def test_the_first_failure_is_the_lowest_index_whichever_side_finds_it():
    with SignatureVerifier(share=0.9) as verifier:
        for forged in (0, 49, 50, 99):
            block = checks(100, forged)
            shared = verifier.submit(block)
            assert shared.split == 50
            assert shared.first_failure() == first_failure(block) == forged


def test_a_block_that_fails_before_its_signature_stage_only_costs_the_even_split():
    with SignatureVerifier(share=0.9) as verifier:
        verifier.submit(checks(40))  # its block is refused earlier (a bad seal, say): never consumed
        later = verifier.submit(checks(40))
        assert later.split == round(40 * verifier.share)  # still correct, just not split evenly
        assert later.first_failure() == -1
