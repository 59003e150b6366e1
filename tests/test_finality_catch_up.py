"""Catch-up on proof (GRANDPA's): a voter behind the others jumps past a round only when the votes it got
prove that round completed, and takes from it what a voter that was there has (consensus/finality/voter.py).

The in-memory network and a fake clock (consensus/finality/memory.py). Commits to the late voter are
dropped in these tests (GossipSub drops silently; the re-sent commit may come much later): what it
learns must come from the rounds' votes that the others re-send.
"""

from __future__ import annotations

from consensus.finality.memory import Simulation
from consensus.finality.messages import decode_message
from consensus.finality.justification import Justification
from consensus.finality.voter import VoterConfig
from runtime import crypto
from runtime.finality import PREVOTE, sign_vote
from tests.helpers.finality import one_way_cut

KEYS = [crypto.dev_keypair(name) for name in ("Alice", "Bob", "Charlie", "Dave")]
CONFIG = VoterConfig(gossip_ms=500, rebroadcast_ms=2000)


def grow(sim: Simulation, parent: bytes, count: int, tag: bytes = b"") -> list:
    headers = []
    for i in range(count):
        headers.append(sim.add_block(parent, tag + bytes([i])))
        parent = headers[-1].hash
    return headers


def drop_commits_to(sim: Simulation, name: str) -> None:
    send = sim.network.send_from

    def send_from(sender: str, message: bytes) -> None:
        if not isinstance(decode_message(message), Justification):
            return send(sender, message)
        inbox = sim.network.inboxes[name]
        before = len(inbox)
        send(sender, message)
        while len(inbox) > before:
            inbox.pop()
    sim.network.send_from = send_from


def test_a_late_voter_catches_up_on_a_completed_round_finalizing_and_starting_from_its_estimate():
    sim = Simulation(KEYS, config=CONFIG)
    chain = grow(sim, sim.genesis.hash, 2)
    assert sim.run_until(lambda: all(sim.finalized_number(n) >= 2 for n in sim.nodes), 20_000)
    sim.take_offline("v3")
    chain += grow(sim, chain[-1].hash, 3, b"later")
    others = ["v0", "v1", "v2"]
    assert sim.run_until(lambda: all(sim.finalized_number(n) >= 5 for n in others), 30_000)
    sim.run_until(lambda: False, 5_000)  # more rounds go by with nothing new to finalize
    sim.take_offline("v2")  # two of four left: their round stalls, and only they can tell v3 about the last one
    sim.run_until(lambda: False, 3_000)
    stalled = sim.nodes["v0"].voter.round_number
    late = sim.nodes["v3"].voter
    assert late.round_number < stalled - 2 and sim.finalized_number("v3") == 2
    drop_commits_to(sim, "v3")
    sim.bring_online("v3")
    assert sim.run_until(lambda: sim.finalized_number("v3") >= 5, 20_000)
    # it finalized from the votes of an ended round (re-sent by v0 and v1, v2's among them), which proved that
    # round completed: no commit reached it
    justification = late.env.justifications[chain[-1].hash]
    assert justification.round < stalled and {v.voter for v in justification.precommits} >= {KEYS[2].public}
    # from there it takes part in the rounds up to the stalled one, from the estimate of the round before
    assert sim.run_until(lambda: late.round_number == stalled, 10_000)
    assert late.background.number == stalled - 1 and late.current.prior_estimate == (chain[-1].hash, 5)
    # v2 returns: the stalled round completes and all four finalize what comes next
    sim.bring_online("v2")
    more = grow(sim, chain[-1].hash, 2, b"more")
    assert sim.run_until(lambda: all(sim.finalized_number(n) >= 7 for n in sim.nodes), 30_000)
    assert late.env.finalized() == (more[-1].hash, 7)


def test_prevotes_of_a_third_of_the_stake_in_a_later_round_prove_nothing_and_move_no_one():
    sim = Simulation(KEYS, config=CONFIG)
    grow(sim, sim.genesis.hash, 2)
    voter = sim.nodes["v0"].voter
    start = voter.round_number
    far = start + 10
    for key in KEYS[2:]:  # two of four: more than a third, not a supermajority
        vote = sign_vote(key, voter.env.genesis_hash, 0, far, PREVOTE, sim.genesis.hash, 0)
        assert voter.on_decoded(vote)
    voter.poll()
    assert voter.round_number == start  # before, it jumped to round `far` on these alone
    # nor after a whole rebroadcast period in a round that does not end (a stall fallback once joined them
    # then; rounds now end only completable, so voters never end up a round apart with no proof to exchange)
    voter.env.clock.now += CONFIG.rebroadcast_ms
    voter.poll()
    assert voter.round_number == start


def test_a_one_way_cut_ends_no_round_and_finality_goes_on_when_it_heals():
    """v0 and v1 hear everyone but v2 and v3 hear only each other. v0 and v1 hear precommits of only two of
    four (v2 and v3 see no prevote GHOST, so they do not precommit): the round is not completable and no one
    ends it (before, v0 and v1 ended it on an estimate that could no longer rise, and each pair then waited
    in its own round). Healed (and with no commit reaching v2 and v3), the round completes and finality
    goes on."""
    sim = Simulation(KEYS, config=CONFIG)
    chain = grow(sim, sim.genesis.hash, 2)
    assert sim.run_until(lambda: all(sim.finalized_number(n) >= 2 for n in sim.nodes), 20_000)
    cut = one_way_cut(sim, on=True)
    ahead, late = sim.nodes["v0"].voter, sim.nodes["v2"].voter
    cut_round = ahead.round_number
    sim.run_until(lambda: False, 20_000)
    assert {node.voter.round_number for node in sim.nodes.values()} == {cut_round}
    assert sum(1 for v in ahead.current.precommits.first) == 2
    cut["on"] = False
    drop_commits_to(sim, "v2")  # only the votes may tell them: the last commit v0 and v1 re-send is older
    drop_commits_to(sim, "v3")
    more = grow(sim, chain[-1].hash, 2, b"healed")
    assert sim.run_until(lambda: all(sim.finalized_number(n) >= 4 for n in sim.nodes), 30_000)
    assert late.env.finalized() == (more[-1].hash, 4)
