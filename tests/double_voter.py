"""A validator node that equivocates, for the network tests (test-only, like tests/helpers/crash_importer.py).

    python tests/double_voter.py <the usual gradchain arguments>

It runs the real node, except that the first time it signs a fresh prevote for a block
above the last finalized one, it also signs and gossips a second prevote of the same
round for the finalized block itself: two votes, one round and stage, different targets.
It re-sends both votes with its periodic re-sends, as long as the others keep that
round's votes (FINISHED_ROUNDS), so a peer that missed them still gets both: an honest
voter re-sends only the votes of its current and previous rounds, and right after a
restart the first sends may reach nobody (the gossip mesh forms after the connections).

Only a freshly signed vote triggers it: a prevote re-sent from the journal at start (a
restarted validator repeats what it saved) goes out before the node has peers, and a
double vote sent then reached nobody (the fault harness's intermittent miss, issue 15).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.finality import voter as voter_module  # noqa: E402
from consensus.finality.messages import encode_message  # noqa: E402
from runtime.finality import PREVOTE, sign_vote  # noqa: E402

_honest_sign_and_cast = voter_module.Voter._sign_and_cast
_honest_rebroadcast = voter_module.Voter._rebroadcast


def _double_sign_and_cast(self, round_, stage, target) -> None:
    fresh = self.journal.saved_vote(self.voters.set_id, round_.number, stage) is None
    _honest_sign_and_cast(self, round_, stage, target)
    if stage != PREVOTE or not fresh or getattr(self, "double_vote", None) is not None or target == round_.base:
        return
    second = sign_vote(self.keypair, self.env.genesis_hash, self.voters.set_id, round_.number, PREVOTE, *round_.base)
    self.double_vote = (round_.prevoted, second)
    self.network.broadcast(encode_message(second))
    voter_module.log.warning("equivocated on purpose (test double voter)", round=round_.number)


def _rebroadcast_both(self, now: int) -> None:
    due = now >= self.last_broadcast_ms + self.config.rebroadcast_ms
    _honest_rebroadcast(self, now)
    votes = getattr(self, "double_vote", None)
    if due and votes is not None and votes[1].set_id == self.voters.set_id \
            and self.current.number - votes[1].round <= voter_module.FINISHED_ROUNDS:
        for vote in votes:
            self.network.broadcast(encode_message(vote))


voter_module.Voter._sign_and_cast = _double_sign_and_cast
voter_module.Voter._rebroadcast = _rebroadcast_both

if __name__ == "__main__":
    from node.cli import main

    sys.exit(main())
