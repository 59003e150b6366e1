"""Which refused blocks make a peer misbehave: a block an honest peer cannot send, not one finality passed."""

from consensus.import_queue import BAD, IMPORTED, BadSeal, ImportResult, RevertsFinality, WrongAuthor
from node.network.chain_adapter import _outcome_of


def test_a_block_below_finality_is_refused_without_blaming_the_peer_that_sent_it():
    # a validator restarted after finality moved on authors on its old head before it syncs (seen in the
    # 4-node finality test): its peers must refuse that block, not ban it, or it could never catch up
    outcome = _outcome_of(ImportResult(BAD, b"\1" * 32, 4, RevertsFinality("block #4 is at or below finalized #6")))
    assert outcome.kind == "bad" and outcome.code == "reverts_finality"
    assert outcome.reason == "reverts_finality: block #4 is at or below finalized #6"
    assert not outcome.is_misbehaviour


def test_a_forged_block_is_misbehaviour():
    for error in (BadSeal("the seal is not the author's"), WrongAuthor("slot 3 belongs to another")):
        outcome = _outcome_of(ImportResult(BAD, b"\1" * 32, 4, error))
        assert outcome.code == error.code and outcome.is_misbehaviour


def test_an_imported_block_is_not_misbehaviour():
    outcome = _outcome_of(ImportResult(IMPORTED, b"\1" * 32, 4))
    assert outcome.kind == "imported" and outcome.reason == "" and not outcome.is_misbehaviour
