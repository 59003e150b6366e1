"""A validator node that equivocates, for the network tests (test-only, like tests/helpers/crash_importer.py).

    python tests/double_voter.py <the usual gradchain arguments>

It runs the real node, except that the first time it prevotes for a block above the
last finalized one, it also signs and gossips a second prevote of the same round for
the finalized block itself: two votes, one round and stage, different targets.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.finality import voter as voter_module  # noqa: E402
from consensus.finality.messages import encode_message  # noqa: E402
from runtime.finality import PREVOTE, sign_vote  # noqa: E402

_honest_cast = voter_module.Voter._cast


def _double_cast(self, round_, vote) -> None:
    _honest_cast(self, round_, vote)
    if vote.stage != PREVOTE or getattr(self, "equivocated", False) or vote.target == round_.base:
        return
    second = sign_vote(self.keypair, self.env.genesis_hash, vote.set_id, vote.round, PREVOTE, *round_.base)
    self.network.broadcast(encode_message(second))
    self.equivocated = True
    voter_module.log.warning("equivocated on purpose (test double voter)", round=vote.round)


voter_module.Voter._cast = _double_cast

if __name__ == "__main__":
    from node.cli import main

    sys.exit(main())
