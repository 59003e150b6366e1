"""A node that synced exits promptly after a clean stop (node/run.py: leave_without_teardown).

After it logged "stopped", a synced node spent seconds of CPU in the interpreter's teardown: joining
the useful-work thread, a last collection over every object (the heap frozen during sync included),
then freeing every module (torch, scipy). On a busy machine that outlasted the 20 s a supervisor waits
after SIGTERM, and the node was killed. Now the process ends as soon as the node stopped cleanly.
The teardown is made visible with PYTHONVERBOSE ("# cleanup[2] removing <module>" lines on stderr): the
node's modules must not appear there.
"""

from __future__ import annotations

import signal
import time

import pytest

from node.testnet.processes import LocalTestnet, TestnetNode, tails, wait_until
from tests.faults import invariants

pytestmark = pytest.mark.slow
BLOCKS = 30


def test_a_node_that_synced_exits_at_once_after_it_stopped_without_the_interpreters_teardown(tmp_path, monkeypatch):
    testnet = LocalTestnet(tmp_path / "net", 1, slot_ms=500)
    follower = TestnetNode("Follower", tmp_path / "follower", testnet.spec_path, validator=False)
    everyone = [*testnet.nodes, follower]
    try:
        testnet.start()
        [author] = testnet.nodes
        wait_until(lambda: invariants.best(author) >= BLOCKS, 120, f"{BLOCKS} blocks", everyone)
        monkeypatch.setenv("PYTHONVERBOSE", "1")  # the follower's teardown, if any, says so on stderr
        follower.start([author.address])
        monkeypatch.delenv("PYTHONVERBOSE")
        wait_until(lambda: follower.answers_rpc() and invariants.best(follower) >= BLOCKS, 90, "the follower's sync",
                   everyone)
        assert any('"synced blocks"' in line for line in follower.log_path.read_text().splitlines())
        sent = time.monotonic()
        follower.send(signal.SIGTERM)
        follower.process.wait(20)
        took = time.monotonic() - sent
        log = follower.log_path.read_text(errors="replace")
        after = log[log.index('"event": "stopped"'):]
        assert follower.exit_code() == 0
        # the node's own teardown would remove its modules; other processes that share its stderr (the
        # spawned signature worker, multiprocessing's resource tracker) load none of them
        assert "removing node.run" not in after and "removing torch\n" not in after, after[:2000]
        assert '"event": "database closed"' in log
        assert took < 15, f"{took:.1f} s from SIGTERM to exit"
        print(f"the synced follower exited {took:.2f} s after SIGTERM")
    except BaseException:
        print(tails(everyone, 30))
        raise
    finally:
        follower.stop()
        testnet.stop()
