"""The finality voter: GRANDPA-style rounds of prevotes and precommits, gated by useful work.

One round, for a voter of the set in force at the last finalized block F:

    start ──2T or completable──> prevote the best chain containing the last
                                 round's estimate, cut to its verified prefix
          ──4T or completable──> precommit the prevote GHOST (once it descends
                                 from the last estimate), cut to its verified prefix
          ──completable, precommitted, the last estimate final──> next round

This is finality-grandpa's round completion: "completable" (votes.py) needs
precommits of a supermajority heard, so no voter ends a round that voters
holding more than a third of the stake have not precommitted in, and voters never
end up a round apart with nothing to show each other. Whenever a round's
precommits reach a supermajority on a block above F, that block is finalized
with a justification (the commit, re-sent with the votes for nodes that missed
the round). The round before the current one stays open (the background round),
so late precommits still finalize.

The useful-work gate: this validator signs a vote only for a block its node
marked `verified` whose every ancestor above F is verified too; a `pending`,
`disputed` or `unverifiable` block cuts the vote to the verified blocks below
it. Votes never go past a block that changes the validator set: that block is
finalized by the old set, and the new set starts at round 1 on top of it.

Liveness: a stalled round (less than 2/3 of the stake online) waits; every
voter re-sends its votes of the current round and its last commit every
`rebroadcast_ms`, so validators that come back pick up where the others are
and the round completes. A voter behind the others catches up as GRANDPA's does,
on proof: a valid commit of a later round, or a later round's prevotes and
precommits that make it completable. Those come as GRANDPA's catch-up response
does, but by gossip: a voter that hears a vote of a round before its background
round (a voter behind) re-sends every vote of its latest ended round with
supermajorities of both, at most once per `rebroadcast_ms`. The proven round becomes the background round (its
precommits finalize what they support) and the late voter starts the round after
it, from its estimate, as a voter that took part in it would.

Safety against restarts: every vote is saved in the journal (synced) before it
is sent, and a voter always re-sends a saved vote rather than signing a new one.
A restarted voter resumes in the last round it voted in, with the round before
in the background holding its journaled votes of that round (re-sent too: voters
still in that round may need them to end it).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from consensus.finality.justification import (
    BadJustification, Justification, build_justification, verify_justification,
)
from consensus.finality.messages import BadFinalityMessage, decode_message, encode_message
from consensus.finality.ports import VERIFIED, Environment, NetworkPort, VoteJournal, VoterSet
from consensus.finality.votes import (
    EQUIVOCATION, Block, Round, ancestry, compute_outlook, is_descendant_or_equal, may_wait,
)
from runtime.crypto import Keypair
from runtime.errors import GradchainError
from runtime.finality import PRECOMMIT, PREVOTE, SignedVote, is_valid_vote_signature, sign_vote

log = structlog.get_logger("finality")

MAX_FUTURE_VOTES = 4096  # buffered votes of rounds ahead of ours, over all voters
JOURNAL_ROUNDS = 8  # own votes kept in the journal: the current round and a few before it
FINISHED_ROUNDS = 16  # finished rounds whose votes are kept to catch a late, conflicting vote (equivocation)


@dataclass(frozen=True)
class VoterConfig:
    gossip_ms: int = 1000  # T: the time a message needs to reach every peer
    rebroadcast_ms: int = 4000  # how often own votes and the last commit are sent again
    max_rounds_ahead: int = 64  # votes of rounds further ahead are dropped


class Voter:
    def __init__(self, env: Environment, network: NetworkPort, journal: VoteJournal, keypair: Keypair | None,
                 config: VoterConfig = VoterConfig()) -> None:
        self.env = env
        self.network = network
        self.journal = journal
        self.keypair = keypair
        self.config = config
        self.last_commit: Justification | None = None
        self.future: dict[int, list[SignedVote]] = {}
        self.background: Round | None = None
        self.finished: dict[int, Round] = {}  # rounds before the background one: their votes, for evidence only
        self.last_broadcast_ms = env.now_ms()
        self.voter_behind = False  # a vote of a round before the background one came in: answer with proof
        self.last_catch_up_ms: int | None = None
        self._start_set()

    # --- state ------------------------------------------------------------------

    @property
    def is_voter(self) -> bool:
        return self.keypair is not None and self.keypair.public in self.voters

    @property
    def round_number(self) -> int:
        return self.current.number

    def _start_set(self) -> None:
        """Begin voting under the set in force at the last finalized block (at start and after a change)."""
        finalized = self.env.finalized()
        self.voters: VoterSet = self.env.voter_set_at(finalized[0])
        resume = self.journal.last_round(self.voters.set_id) if self.keypair is not None else 0
        self.background = None
        self.finished = {}
        self.future.clear()
        if resume > 1:  # a restart: the round before stays in the background, with this voter's votes in it
            self._enter_round(resume - 1, finalized)
            self.background = self.current
        self._enter_round(max(1, resume), finalized)
        log.info("finality voter started", set_id=self.voters.set_id, round=self.current.number,
                 finalized=finalized[1], voting=self.is_voter)

    def _enter_round(self, number: int, prior_estimate: Block) -> None:
        self.current = Round(number, self.env.finalized(), self.env.now_ms(), prior_estimate)
        if self.keypair is not None:  # votes saved before a restart are re-sent, never replaced
            if number > JOURNAL_ROUNDS:
                self.journal.forget_before_round(self.voters.set_id, number - JOURNAL_ROUNDS)
            for stage in (PREVOTE, PRECOMMIT):
                saved = self.journal.saved_vote(self.voters.set_id, number, stage)
                if saved is not None:
                    self._cast(self.current, saved)
        for vote in self.future.pop(number, []):
            self._record(self.current, vote)
        self.future = {r: votes for r, votes in self.future.items() if r > number}

    # --- input --------------------------------------------------------------------

    def on_message(self, data: bytes) -> bool:
        """Take one gossiped message; False if it was malformed or proved nothing (a peer to report)."""
        try:
            message = decode_message(data)
        except BadFinalityMessage:
            return False
        return self.on_decoded(message)

    def on_decoded(self, message) -> bool:
        """Take a decoded vote or commit (other finality messages are not the voter's)."""
        if isinstance(message, SignedVote):
            return self._on_vote(message)
        if isinstance(message, Justification):
            return self._on_commit(message)
        return True

    def _on_vote(self, vote: SignedVote) -> bool:
        if vote.set_id != self.voters.set_id or vote.voter not in self.voters:
            return True  # another set's vote: not wrong, just not ours to count
        round_ = self._open_round(vote.round)
        if round_ is None and vote.round < (self.background or self.current).number:
            self.voter_behind = True  # its voter is behind: the background round's votes let it catch up
        if round_ is None and vote.round in self.finished:
            round_ = self.finished[vote.round]  # a late vote: counted for nothing, but checked for equivocation
        if round_ is None:
            ahead = vote.round - self.current.number
            waiting = self.future.get(vote.round, [])
            if (0 < ahead <= self.config.max_rounds_ahead and sum(map(len, self.future.values())) < MAX_FUTURE_VOTES
                    and may_wait(waiting, vote) and is_valid_vote_signature(self.env.genesis_hash, vote)):
                self.future.setdefault(vote.round, []).append(vote)
            return True
        if round_.stage(vote.stage).first.get(vote.voter) == vote:
            return True  # a re-send of a vote already counted: no need to check its signature again
        if not is_valid_vote_signature(self.env.genesis_hash, vote):
            return False
        self._record(round_, vote)
        return True

    def _open_round(self, number: int) -> Round | None:
        if number == self.current.number:
            return self.current
        if self.background is not None and number == self.background.number:
            return self.background
        return None

    def _record(self, round_: Round, vote: SignedVote) -> None:
        votes = round_.stage(vote.stage)
        if votes.add(vote) == EQUIVOCATION:
            first, second = votes.equivocations[vote.voter]
            log.warning("equivocation", voter=vote.voter.hex()[:16], round=vote.round, stage=vote.stage)
            self.env.report_equivocation(first, second)

    def _on_commit(self, justification: Justification) -> bool:
        if justification.set_id != self.voters.set_id:
            return True
        finalized = self.env.finalized()
        if justification.target_number <= finalized[1] and justification.round < self.current.number:
            return True  # old news
        if self.env.header(justification.target_hash) is None:
            return True  # not imported yet: the commit is sent again
        try:
            verify_justification(justification, self.env.genesis_hash, self.voters)
        except BadJustification as error:
            log.info("refused a commit", reason=error.message)
            return False
        if justification.target_number > finalized[1]:
            self._finalize(justification)
            if self._set_changed():
                return True
        if justification.round >= self.current.number:
            self.background = None
            self._enter_round(justification.round + 1, justification.target)
        return True

    # --- the state machine ---------------------------------------------------------

    def poll(self) -> None:
        """Make every step that is due now."""
        now = self.env.now_ms()
        for round_ in (self.background, self.current):
            if round_ is not None:
                self._refresh(round_)
        if self._set_changed():
            return
        self._catch_up()
        self._vote(now)
        self._advance(now)
        self._rebroadcast(now)
        self._answer_catch_up(now)

    def next_wakeup_ms(self) -> int:
        """The latest time to call poll() again if nothing else happens (a timer already passed is not one:
        what waits then, e.g. for votes, is woken by them, and a past time would make the caller spin)."""
        now, start = self.env.now_ms(), self.current.started_ms
        times = [self.last_broadcast_ms + self.config.rebroadcast_ms]
        if self.is_voter and self.current.prevoted is None:
            times.append(start + 2 * self.config.gossip_ms)
        if self.is_voter and self.current.precommitted is None:
            times.append(start + 4 * self.config.gossip_ms)
        return min([t for t in times[1:] if t > now] + times[:1])

    def _refresh(self, round_: Round) -> None:
        round_.outlook = compute_outlook(self.env.header, round_.base, self.voters, round_.prevotes,
                                         round_.precommits)
        target = round_.outlook.precommit_ghost
        finalized = self.env.finalized()
        if target is None or target[1] <= finalized[1] or not is_descendant_or_equal(self.env.header, finalized, target):
            return
        support = [v for v in round_.precommits.first.values()
                   if is_descendant_or_equal(self.env.header, target, v.target)]
        self._finalize(build_justification(self.voters.set_id, round_.number, target, support, self.env.header))

    def _finalize(self, justification: Justification) -> None:
        try:
            self.env.finalize_block(justification.target_hash, justification.target_number, justification)
        except GradchainError as error:  # the node refused (e.g. it disputes the block): keep voting
            log.warning("could not finalize", number=justification.target_number, reason=error.message)
            return
        self.last_commit = justification
        log.info("finalized", number=justification.target_number, hash=justification.target_hash.hex()[:16],
                 round=justification.round, set_id=justification.set_id)
        # Not gossiped now: every voter that saw the precommits finalizes by itself; the commit goes out
        # with the periodic re-send, for the nodes that missed them (GossipSub's message budget is small).

    def _set_changed(self) -> bool:
        finalized = self.env.finalized()
        if self.env.voter_set_at(finalized[0]).set_id == self.voters.set_id:
            return False
        self._start_set()
        return True

    def _catch_up(self) -> None:
        """Jump past the highest round ahead that the votes waiting for it prove completed (GRANDPA's
        catch-up: supermajorities of prevotes and precommits, completable). Votes of voters with more
        than a third of the stake in a later round prove nothing about the rounds before it (and jumping
        on them, as this voter once did, left the proven round's estimate and finality behind)."""
        for number in sorted(self.future, reverse=True):
            proven = Round(number, self.env.finalized(), self.env.now_ms(), self.env.finalized())
            for vote in self.future[number]:
                proven.stage(vote.stage).add(vote)
            outlook = compute_outlook(self.env.header, proven.base, self.voters, proven.prevotes, proven.precommits)
            if not outlook.completable or outlook.precommit_ghost is None:
                continue
            log.info("catching up", from_round=self.current.number, to_round=number + 1, estimate=outlook.estimate[1])
            for behind in (self.background, self.current):
                if behind is not None:
                    self._retire(behind)
            proven = Round(number, self.env.finalized(), self.env.now_ms(), self.env.finalized())
            for vote in self.future.pop(number):
                self._record(proven, vote)  # equivocations among them are evidence too
            self._refresh(proven)  # finalizes what its precommits support
            if self._set_changed():
                return
            self.background = proven
            finalized = self.env.finalized()
            estimate = proven.outlook.estimate
            self._enter_round(number + 1, finalized if finalized[1] >= estimate[1] else estimate)
            return

    def _retire(self, round_: Round) -> None:
        """Keep a round that ends (its votes catch a late, conflicting vote)."""
        self.finished[round_.number] = round_
        while len(self.finished) > FINISHED_ROUNDS:
            del self.finished[min(self.finished)]

    def _vote(self, now: int) -> None:
        if not self.is_voter:
            return
        round_ = self.current
        prevote_due = now >= round_.started_ms + 2 * self.config.gossip_ms or round_.outlook.completable
        if round_.prevoted is None and prevote_due:
            target = self._votable_prefix(self.env.best_chain_head(round_.prior_estimate[0]))
            self._sign_and_cast(round_, PREVOTE, target)
            self._refresh(round_)
        precommit_due = now >= round_.started_ms + 4 * self.config.gossip_ms or round_.outlook.completable
        ghost = round_.outlook.prevote_ghost
        if (round_.prevoted is not None and round_.precommitted is None and precommit_due and ghost is not None
                and is_descendant_or_equal(self.env.header, round_.prior_estimate, ghost)):
            self._sign_and_cast(round_, PRECOMMIT, self._votable_prefix(ghost[0]))
            self._refresh(round_)

    def _votable_prefix(self, tip_hash: bytes) -> Block:
        """The highest block from the last finalized one up to `tip_hash` that this node may vote for:
        it and every block between it and finality verified here, and no set change below it."""
        finalized = self.env.finalized()
        tip = self.env.header(tip_hash)
        path = ancestry(self.env.header, finalized, (tip_hash, tip.number)) if tip is not None else None
        chosen = finalized
        for block_hash in reversed(path or []):
            if self.env.block_status(block_hash) != VERIFIED:
                break
            chosen = (block_hash, chosen[1] + 1)
            if self.env.voter_set_at(block_hash).set_id != self.voters.set_id:
                break  # the block that changes the set is the old set's last to finalize
        return chosen

    def _sign_and_cast(self, round_: Round, stage: int, target: Block) -> None:
        vote = self.journal.saved_vote(self.voters.set_id, round_.number, stage)
        if vote is None:
            vote = sign_vote(self.keypair, self.env.genesis_hash, self.voters.set_id, round_.number, stage, *target)
            self.journal.save_vote(vote)  # durable before anyone can see it
        self._cast(round_, vote)

    def _cast(self, round_: Round, vote: SignedVote) -> None:
        """Count and send a vote that is in the journal already."""
        if vote.stage == PREVOTE:
            round_.prevoted = vote
        else:
            round_.precommitted = vote
        round_.stage(vote.stage).add(vote)
        self.network.broadcast(encode_message(vote))

    def _advance(self, now: int) -> None:
        """GRANDPA's round completion: the round is completable, this voter precommitted (a node that does not
        vote: its precommit step came, the prevote GHOST descending from the last estimate), and the previous
        round's estimate is final (finalized there, here, or by a commit). The round stays in the background,
        so that late precommits still finalize what they support."""
        round_ = self.current
        if not round_.outlook.completable:
            return
        if self.is_voter and round_.precommitted is None:
            return
        if not self.is_voter and not is_descendant_or_equal(self.env.header, round_.prior_estimate,
                                                            round_.outlook.prevote_ghost):
            return
        finalized = self.env.finalized()
        last_estimate = self.background.outlook.estimate if self.background is not None else None
        if last_estimate is not None and last_estimate[1] > finalized[1]:
            return  # a round whose votes were not all seen here (restored at a restart) has none: no wait
        estimate = round_.outlook.estimate
        prior = finalized if finalized[1] >= estimate[1] else estimate
        if self.background is not None:
            self._retire(self.background)
        self.background = round_
        self._enter_round(round_.number + 1, prior)

    def _answer_catch_up(self, now: int) -> None:
        """For a voter that is behind, re-send every vote of the latest ended round that has supermajorities of
        prevotes and precommits (what GRANDPA's catch-up response carries), at most once per rebroadcast period."""
        if not self.voter_behind:
            return
        if self.last_catch_up_ms is not None and now < self.last_catch_up_ms + self.config.rebroadcast_ms:
            return
        self.voter_behind = False
        self.last_catch_up_ms = now
        ended = [self.background] if self.background is not None else []
        for round_ in ended + [self.finished[n] for n in sorted(self.finished, reverse=True)]:
            if all(sum(self.voters.weight_of(v) for v in votes.first) >= self.voters.threshold
                   for votes in (round_.prevotes, round_.precommits)):
                for votes in (round_.prevotes, round_.precommits):
                    for vote in votes.first.values():
                        self.network.broadcast(encode_message(vote))
                return

    def _rebroadcast(self, now: int) -> None:
        if now < self.last_broadcast_ms + self.config.rebroadcast_ms:
            return
        self.last_broadcast_ms = now
        # the previous round's too: a voter that missed its end completes it with them
        for round_ in (self.background, self.current):
            for vote in (round_.prevoted, round_.precommitted) if round_ is not None else ():
                if vote is not None:
                    self.network.broadcast(encode_message(vote))
        if self.last_commit is not None:
            self.network.broadcast(encode_message(self.last_commit))
