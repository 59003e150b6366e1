"""The vote journal on a real LevelDB: votes survive a kill -9, and a restarted voter re-sends them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from consensus.finality.memory import Simulation
from consensus.finality.voter import Voter, VoterConfig
from runtime import crypto
from runtime.finality import PRECOMMIT, PREVOTE, sign_vote
from storage.database import Database
from storage.vote_journal import DatabaseVoteJournal, JournalConflict

ROOT = Path(__file__).resolve().parent.parent
ALICE = crypto.dev_keypair("Alice")


def test_saved_votes_read_back_and_a_conflicting_vote_is_refused(tmp_path):
    db = Database(tmp_path / "db")
    journal = DatabaseVoteJournal(db)
    vote = sign_vote(ALICE, bytes(32), 2, 7, PREVOTE, bytes(32), 0)
    journal.save_vote(vote)
    journal.save_vote(vote)  # the same vote again is fine (a re-send)
    with pytest.raises(JournalConflict):
        journal.save_vote(sign_vote(ALICE, bytes(32), 2, 7, PREVOTE, b"\x01" * 32, 1))
    assert journal.saved_vote(2, 7, PREVOTE) == vote
    assert journal.saved_vote(2, 7, PRECOMMIT) is None
    assert journal.last_round(2) == 7 and journal.last_round(3) == 0
    journal.save_vote(sign_vote(ALICE, bytes(32), 2, 300, PRECOMMIT, bytes(32), 0))
    assert journal.last_round(2) == 300
    assert journal.forget_before_round(2, 300) == 1
    assert journal.saved_vote(2, 7, PREVOTE) is None and journal.last_round(2) == 300
    db.close()


def test_a_vote_survives_kill_9(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from runtime import crypto
        from runtime.finality import PREVOTE, sign_vote
        from storage.database import Database
        from storage.vote_journal import DatabaseVoteJournal
        journal = DatabaseVoteJournal(Database({str(tmp_path / "db")!r}))
        journal.save_vote(sign_vote(crypto.dev_keypair("Alice"), bytes(32), 0, 5, PREVOTE, bytes(32), 0))
        print("saved", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "saved"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    db = Database(tmp_path / "db")
    assert DatabaseVoteJournal(db).saved_vote(0, 5, PREVOTE).voter == ALICE.public
    db.close()


def test_a_voter_restarted_on_the_leveldb_journal_resends_its_vote(tmp_path):
    sim = Simulation([ALICE, crypto.dev_keypair("Bob")], config=VoterConfig(gossip_ms=200, rebroadcast_ms=1000))
    a = sim.add_block(sim.genesis.hash, b"a")
    sim.take_offline("v1")
    node = sim.nodes["v0"]
    db = Database(tmp_path / "db")
    node.journal = DatabaseVoteJournal(db)
    sim.restart("v0")
    assert sim.run_until(lambda: node.voter.current.prevoted is not None, 2_000)
    prevote = node.voter.current.prevoted
    assert prevote.target == (a.hash, 1)
    db.close()
    # kill and restart on the same database, with a longer fork now best
    sim.add_block(sim.genesis.hash, b"b")
    sim.add_block(sim.add_block(sim.genesis.hash, b"c").hash, b"d")
    db = Database(tmp_path / "db")
    node.journal = DatabaseVoteJournal(db)
    restarted = Voter(node.env, sim.network.port("probe"), node.journal, ALICE, sim.config)
    assert restarted.current.prevoted == prevote
    db.close()
