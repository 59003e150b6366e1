"""The vote journal: every finality vote this validator signs, synced to disk before it is sent.

A validator killed at any instant and restarted reads its votes back and re-sends
them instead of signing new ones, so it can never sign two different votes for
one round and stage (an equivocation, which is slashed). Votes of old rounds are
dropped once finality has moved past them.
"""

from __future__ import annotations

from runtime import codec
from runtime.errors import GradchainError
from runtime.finality import SignedVote
from storage import schema
from storage.database import Database



class JournalConflict(GradchainError):
    """A second, different vote for a round and stage already voted in: signing it would be an equivocation."""

    code = "vote_journal_conflict"


class DatabaseVoteJournal:
    """The `VoteJournal` port of consensus/finality on the node's LevelDB."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def saved_vote(self, set_id: int, round_number: int, stage: int) -> SignedVote | None:
        raw = self.db.get(schema.vote_journal_key(set_id, round_number, stage))
        return None if raw is None else codec.decode_trusted(SignedVote, raw)

    def save_vote(self, vote: SignedVote) -> None:
        key = schema.vote_journal_key(vote.set_id, vote.round, vote.stage)
        existing = self.db.get(key)
        encoded = codec.encode(vote, SignedVote)
        if existing is not None and existing != encoded:
            raise JournalConflict(f"set {vote.set_id} round {vote.round} stage {vote.stage} was voted already; "
                                  "refusing to record a different vote (it would be an equivocation)")
        self.db.write({key: encoded}, sync=True)

    def last_round(self, set_id: int) -> int:
        last = 0
        for key in self.db.keys_with_prefix(schema.vote_journal_set_prefix(set_id)):
            last = max(last, int.from_bytes(key[9:17], "big"))
        return last

    def forget_before_round(self, set_id: int, round_number: int) -> int:
        """Drop votes of earlier sets and of rounds of `set_id` below `round_number`; returns how many."""
        doomed = []
        for key in self.db.keys_with_prefix(schema.VOTE_JOURNAL):
            key_set = int.from_bytes(key[1:9], "big")
            key_round = int.from_bytes(key[9:17], "big")
            if key_set < set_id or (key_set == set_id and key_round < round_number):
                doomed.append(key)
        if doomed:
            self.db.write({}, doomed, sync=True)
        return len(doomed)
