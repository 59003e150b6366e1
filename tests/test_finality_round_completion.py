"""GRANDPA's round completion (finality-grandpa's round.rs and voting_round.rs), as specifications.

A round r ends (the voter moves to r + 1) only when it is completable: a prevote
GHOST exists, precommits of a supermajority are heard, and they either make the
estimate final or show it can rise no further; the voter has precommitted; and
the previous round's estimate is final. The ended round stays in the background,
so late precommits still finalize what they support. The estimate accounts for
the equivocations the tolerated third of the stake could still make.

Unit cases on `compute_outlook`, then voters over the in-memory network and a
fake clock (consensus/finality/memory.py).
"""

from __future__ import annotations

from consensus.finality.justification import Justification
from consensus.finality.memory import Simulation, make_header
from consensus.finality.messages import decode_message, encode_message
from consensus.finality.ports import PENDING, VoterSet
from consensus.finality.voter import VoterConfig
from consensus.finality.votes import StageVotes, compute_outlook
from runtime import crypto
from runtime.finality import PRECOMMIT, PREVOTE, SignedVote, sign_vote
from tests.helpers.finality import one_way_cut

KEYS = [crypto.dev_keypair(name) for name in ("Alice", "Bob", "Charlie", "Dave")]
CONFIG = VoterConfig(gossip_ms=500, rebroadcast_ms=2000)
ALL = ["v0", "v1", "v2", "v3"]
VOTERS = VoterSet(0, tuple((k.public, 1) for k in KEYS))
GENESIS = make_header(bytes(32), 0, b"genesis")


def chain_of(count: int, parent=GENESIS, tag: bytes = b"") -> list:
    headers = [parent]
    for i in range(count):
        headers.append(make_header(headers[-1].hash, headers[-1].number + 1, tag + bytes([i])))
    return headers[1:]


def header_of(headers):
    known = {h.hash: h for h in [GENESIS, *headers]}
    return known.get


def votes(stage: int, targets: list[tuple[int, object]]) -> StageVotes:
    """Each (voter index, header) signs one vote of round 1 (a voter named twice equivocates)."""
    stage_votes = StageVotes()
    for index, header in targets:
        stage_votes.add(sign_vote(KEYS[index], GENESIS.hash, 0, 1, stage, header.hash, header.number))
    return stage_votes


def outlook(headers, prevotes: StageVotes, precommits: StageVotes):
    return compute_outlook(header_of(headers), (GENESIS.hash, 0), VOTERS, prevotes, precommits)


def test_precommits_of_half_the_stake_leave_the_round_not_completable_with_the_prevote_ghost_as_estimate():
    chain = chain_of(3)
    prevotes = votes(PREVOTE, [(i, chain[2]) for i in range(4)])
    # two of four precommit below the GHOST: the other two plus an equivocation could still finalize #3
    result = outlook(chain, prevotes, votes(PRECOMMIT, [(0, chain[0]), (1, chain[0])]))
    assert result.prevote_ghost == (chain[2].hash, 3)
    assert result.estimate == (chain[2].hash, 3) and not result.completable
    # a third precommit below it settles it: #1 is the highest block that could still get a supermajority
    result = outlook(chain, prevotes, votes(PRECOMMIT, [(0, chain[0]), (1, chain[0]), (2, chain[0])]))
    assert result.estimate == (chain[0].hash, 1) and result.completable


def test_the_estimate_counts_the_equivocations_the_tolerated_third_could_still_make():
    chain = chain_of(3)
    prevotes = votes(PREVOTE, [(i, chain[2]) for i in range(4)])
    precommits = votes(PRECOMMIT, [(0, chain[0]), (1, chain[0]), (2, chain[2])])
    # #3 holds one precommit; Dave's and an equivocation by Alice or Bob would make three
    result = outlook(chain, prevotes, precommits)
    assert result.estimate == (chain[2].hash, 3) and result.completable
    assert result.precommit_ghost == (chain[0].hash, 1)
    # once one of the tolerated third has equivocated, no second equivocation is counted on: #3 cannot reach
    precommits.add(sign_vote(KEYS[0], GENESIS.hash, 0, 1, PRECOMMIT, GENESIS.hash, 0))
    precommits.add(sign_vote(KEYS[3], GENESIS.hash, 0, 1, PRECOMMIT, chain[0].hash, 1))
    result = outlook(chain, prevotes, precommits)
    assert result.estimate == (chain[0].hash, 1) and result.completable


def test_an_equivocators_weight_counts_for_every_block():
    trunk = chain_of(1)
    fork_a = chain_of(1, trunk[0], b"a")
    fork_b = chain_of(1, trunk[0], b"b")
    headers = trunk + fork_a + fork_b
    # Dave prevotes fork b, then fork a: with Alice and Bob on fork a, fork a may hold a supermajority
    prevotes = votes(PREVOTE, [(0, fork_a[0]), (1, fork_a[0]), (2, fork_b[0]), (3, fork_b[0]), (3, fork_a[0])])
    assert outlook(headers, prevotes, StageVotes()).prevote_ghost == (fork_a[0].hash, 2)
    # without the equivocation only their common parent does
    honest = votes(PREVOTE, [(0, fork_a[0]), (1, fork_a[0]), (2, fork_b[0]), (3, fork_b[0])])
    assert outlook(headers, honest, StageVotes()).prevote_ghost == (trunk[0].hash, 1)


def test_votes_for_blocks_not_known_here_are_heard_and_count_at_the_base_only():
    chain = chain_of(3)
    unknown = chain_of(2, chain[0], b"never fetched")  # a fork this node never imported
    prevotes = votes(PREVOTE, [(0, chain[2]), (1, chain[2]), (2, unknown[1]), (3, unknown[1])])
    result = outlook(chain, prevotes, StageVotes())
    assert result.prevote_ghost == (GENESIS.hash, 0)  # before, no GHOST at all: a round that never ended
    # a precommit for an unknown block might be for any block: #3 could still be finalized
    precommits = votes(PRECOMMIT, [(0, chain[2]), (1, GENESIS), (2, unknown[1])])
    prevotes = votes(PREVOTE, [(i, chain[2]) for i in range(4)])
    result = outlook(chain, prevotes, precommits)
    assert result.estimate == (chain[2].hash, 3) and not result.completable


# --- voters over the in-memory network ---------------------------------------------------------------------

def grow(sim: Simulation, parent: bytes, count: int, tag: bytes = b"", **kwargs) -> list:
    headers = []
    for i in range(count):
        headers.append(sim.add_block(parent, tag + bytes([i]), **kwargs))
        parent = headers[-1].hash
    return headers


def all_finalized_at_least(sim: Simulation, number: int, names=ALL):
    return lambda: all(sim.finalized_number(n) >= number for n in names)


class EndedRounds:
    """Watches every voter's background round: each round a voter ends must have been completable, with
    precommits of a supermajority heard (a restart's restored round is not an ended one: skip it)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.seen: set[int] = set()
        self.ended = 0

    def check(self) -> None:
        for node in self.sim.nodes.values():
            round_ = node.voter.background
            if round_ is None or id(round_) in self.seen:
                continue
            self.seen.add(id(round_))
            self.ended += 1
            heard = sum(node.voter.voters.weight_of(v) for v in round_.precommits.first)
            assert heard >= node.voter.voters.threshold, f"{node.name} ended round {round_.number} on {heard}"
            assert compute_outlook(node.env.header, round_.base, node.voter.voters, round_.prevotes,
                                   round_.precommits).completable

    def restarted(self) -> None:
        for node in self.sim.nodes.values():
            if node.voter.background is not None:
                self.seen.add(id(node.voter.background))

    def run_until(self, condition, max_ms: int) -> bool:
        deadline = self.sim.clock.now + max_ms
        while self.sim.clock.now < deadline:
            self.sim.step()
            self.check()
            if condition():
                return True
        return False


def partition(sim: Simulation, *sides: list[str]) -> dict:
    """Drop every message between different sides while `cut["on"]`."""
    side_of = {name: i for i, side in enumerate(sides) for name in side}
    send, cut = sim.network.send_from, {"on": True}

    def send_from(sender: str, message: bytes) -> None:
        if not cut["on"]:
            return send(sender, message)
        inboxes = {name: len(inbox) for name, inbox in sim.network.inboxes.items()}
        send(sender, message)
        for name, length in inboxes.items():
            if side_of[name] != side_of[sender]:
                inbox = sim.network.inboxes[name]
                while len(inbox) > length:
                    inbox.pop()
    sim.network.send_from = send_from
    return cut


def test_in_a_two_two_partition_no_round_ends_and_after_the_heal_both_forks_settle_and_finality_goes_on():
    """The 2|2 partition that once stalled finality for good (tests/faults: Alice and Bob a round ahead of
    Charlie and Dave, with nothing to prove it to them). Cut at every phase of a round (every 250 ms over two
    rounds), each side authoring its own fork, every other time with every voter restarted before the heal.
    Alice and Bob never fetch the shorter fork that Charlie and Dave may still prevote for after the heal."""
    for offset in range(0, 4 * CONFIG.gossip_ms * 2, 250):
        for restart in [offset // 250 % 2 == 1]:
            sim = Simulation(KEYS, config=CONFIG)
            rounds = EndedRounds(sim)
            chain = grow(sim, sim.genesis.hash, 2)
            assert rounds.run_until(all_finalized_at_least(sim, 2), 20_000)
            rounds.run_until(lambda: False, offset)
            cut = partition(sim, ["v0", "v1"], ["v2", "v3"])
            cut_rounds = {name: sim.nodes[name].voter.round_number for name in ALL}
            left = grow(sim, chain[-1].hash, 3, b"left", to=["v0", "v1"])
            grow(sim, chain[-1].hash, 2, b"right", to=["v2", "v3"])
            rounds.run_until(lambda: False, 15_000)
            # no side ends a round on its own: two of four precommits never make one completable
            for name in ALL:
                assert sim.nodes[name].voter.round_number <= cut_rounds[name] + 1, (offset, name)
            assert all(sim.finalized_number(n) == 2 for n in ALL)
            if restart:
                for name in ALL:
                    sim.restart(name)
                rounds.restarted()
            cut["on"] = False
            for header in left:  # sync brings the shorter side the longer fork, never the other way
                for name in ("v2", "v3"):
                    sim.nodes[name].env.import_block(header)
            more = grow(sim, left[-1].hash, 1, b"more")
            assert rounds.run_until(all_finalized_at_least(sim, 6), 30_000), (offset, restart)
            assert {sim.nodes[n].env.finalized() for n in ALL} == {(more[-1].hash, 6)}
            assert all(node.env.equivocations == [] for node in sim.nodes.values())
            assert rounds.ended > 0


def test_late_precommits_of_an_ended_round_still_finalize_and_the_next_round_waits_for_its_estimate():
    """Charlie has not verified #3, so he votes #2; Dave's precommits are held back. Alice, Bob and Charlie's
    precommits make round r completable with #3 as its estimate (Dave's and an equivocation could still
    finalize it) and they move on, having finalized only #2. Round r + 1 is completable too, but does not
    end while round r's estimate is not final. Dave's late precommit of round r finalizes #3 from round r,
    and the rounds go on."""
    sim = Simulation(KEYS, config=CONFIG)
    chain = grow(sim, sim.genesis.hash, 2)
    assert sim.run_until(all_finalized_at_least(sim, 2), 20_000)
    send, held = sim.network.send_from, []

    def send_from(sender: str, message: bytes) -> None:
        decoded = decode_message(message)
        if isinstance(decoded, Justification):
            return  # no commit may tell them: only round r's votes
        if sender == "v3" and isinstance(decoded, SignedVote) and decoded.stage == PRECOMMIT:
            held.append(decoded)
            return
        send(sender, message)
    sim.network.send_from = send_from
    alice = sim.nodes["v0"].voter
    top = sim.add_block(chain[-1].hash, b"top", status={"v2": PENDING})
    assert sim.run_until(lambda: alice.background is not None and alice.background.outlook.estimate == (top.hash, 3),
                         20_000)
    ended = alice.background
    assert sim.finalized_number("v0") == 2
    assert ended.outlook.precommit_ghost == (chain[-1].hash, 2)
    # the next round is completable, Alice precommitted in it, and yet it waits: #3 is not final
    sim.run_until(lambda: False, 10_000)
    assert alice.round_number == ended.number + 1 and alice.current.outlook.completable
    assert alice.current.precommitted is not None
    late = next(v for v in held if v.round == ended.number)
    for name in ("v0", "v1", "v2"):
        sim.network.inboxes[name].append(encode_message(late))
    sim.step()
    assert sim.finalized_number("v0") == 3 and alice.env.justifications[top.hash].round == ended.number
    assert sim.run_until(lambda: alice.round_number > ended.number + 1, 10_000)


def test_voters_restarted_a_round_apart_meet_again_on_their_journaled_votes():
    """Alice and Bob hear everyone; Charlie and Dave stop hearing them just after the prevotes of round r.
    Alice and Bob end round r on all four precommits, Charlie and Dave (two precommits) cannot. All four are
    restarted (kill -9: only the journals remain) and the cut heals. A restarted voter keeps the round before
    its last in the background with its journaled votes, and re-sends them: Charlie and Dave end round r,
    and finality goes on (with nothing re-sent, each pair waited in its own round for good)."""
    sim = Simulation(KEYS, config=CONFIG)
    chain = grow(sim, sim.genesis.hash, 2)
    assert sim.run_until(all_finalized_at_least(sim, 2), 20_000)
    cut = one_way_cut(sim, on=False)
    top = grow(sim, chain[-1].hash, 1, b"top")
    alice, charlie = sim.nodes["v0"].voter, sim.nodes["v2"].voter
    assert sim.run_until(lambda: len(charlie.current.prevotes.first) == 4 and charlie.current.precommitted is None,
                         10_000)
    cut_round = charlie.round_number
    cut["on"] = True
    sim.run_until(lambda: False, 10_000)
    assert alice.round_number == cut_round + 1 and charlie.round_number == cut_round
    for name in ALL:
        sim.restart(name)
    cut["on"] = False
    assert sim.nodes["v0"].voter.background.number == cut_round
    more = grow(sim, top[-1].hash, 1, b"more")
    assert sim.run_until(all_finalized_at_least(sim, 4), 30_000)
    assert {sim.nodes[n].env.finalized() for n in ALL} == {(more[-1].hash, 4)}
