"""The wire format of finality gossip: one canonical msgpack array [kind, body].

    [0, SignedVote]      a prevote or precommit
    [1, Justification]   a commit: the proof that a block is final (also how a
                         node that missed a round catches up)
    [2, SignedDispute]   a validator's statement that a block's useful-work report
                         did not reproduce (collected into slashing evidence)

Decoding is strict (runtime.codec) and bounded: anything else is a
`BadFinalityMessage`, which the network may count against the sender.
"""

from __future__ import annotations

from consensus.finality.justification import Justification
from runtime import codec
from runtime.errors import CodecError, GradchainError
from runtime.finality import SignedDispute, SignedVote

MAX_MESSAGE_BYTES = 1 << 20  # GossipSub's default cap on one message
VOTE, COMMIT, DISPUTE = 0, 1, 2
_TYPES = {VOTE: SignedVote, COMMIT: Justification, DISPUTE: SignedDispute}
_KINDS = {SignedVote: VOTE, Justification: COMMIT, SignedDispute: DISPUTE}
FinalityMessage = SignedVote | Justification | SignedDispute


class BadFinalityMessage(GradchainError):
    """Bytes that are not a finality message."""

    code = "bad_finality_message"


def encode_message(message: FinalityMessage) -> bytes:
    kind = _KINDS[type(message)]
    return codec.pack([kind, codec.encoder_for(type(message))(message)])


def decode_message(data: bytes) -> FinalityMessage:
    try:
        tree = codec.unpack(data, max_length=MAX_MESSAGE_BYTES)
        if type(tree) is not list or len(tree) != 2 or type(tree[0]) is not int or tree[0] not in _TYPES:
            raise CodecError("expected [kind, body] with kind 0 (vote), 1 (commit) or 2 (dispute)")
        return codec.decoder_for(_TYPES[tree[0]])(tree[1])
    except CodecError as error:
        raise BadFinalityMessage(f"not a finality message: {error.message}") from None
