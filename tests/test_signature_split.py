"""How a run's signature checks are shared with the worker process (work stealing).

The worker verifies each block's checks from the front; this process, when it reaches the
block's signature stage, verifies from the back whatever the worker has not claimed. Whoever
verifies what, the answer is the lowest failing index, as in line; a dead worker is a named
error, never a hang.
"""

from __future__ import annotations

import os
import time

import pytest

from consensus import signature_worker
from consensus.signatures import SignatureVerifier, SignatureWorkerFailed, first_failure
from runtime import crypto

KEYPAIR = crypto.Keypair.from_seed(b"\x07" * 32)


def checks(count: int, *forged: int) -> list[tuple[bytes, bytes, bytes]]:
    made = []
    for i in range(count):
        message = os.urandom(32)
        signature = KEYPAIR.sign(message) if i not in forged else b"\x01" * 64
        made.append((KEYPAIR.public, message, signature))
    return made


def wait_until_the_worker_is_done(verifier: SignatureVerifier, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while verifier._board[signature_worker.FINISHED] < verifier._sequence:
        assert time.monotonic() < deadline, "the worker did not finish its blocks"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def small_chunks():
    with SignatureVerifier(chunk=4) as verifier:
        yield verifier


@pytest.mark.parametrize("forged", [(), (0,), (3,), (4,), (17,), (38,), (39,), (5, 30), (20, 21)])
def test_the_answer_is_the_lowest_failing_index_wherever_the_claims_meet(small_chunks, forged):
    block = checks(40, *forged)
    expected = first_failure(block)
    verifier = small_chunks
    at_once = verifier.submit(block)  # asked at once: the claims meet somewhere in the block
    assert at_once.first_failure() == expected
    later = verifier.submit(block)
    wait_until_the_worker_is_done(verifier)  # the worker verified what it needed alone
    here = verifier.here_checks
    assert later.first_failure() == expected
    assert verifier.here_checks == here  # nothing was left for this process


def test_a_block_the_worker_has_not_reached_is_verified_here_whole():
    with SignatureVerifier() as verifier:
        busy = verifier.submit(checks(3000))  # keeps the worker busy for a while
        block = checks(64, 50)
        shared = verifier.submit(block)
        assert shared.first_failure() == 50
        assert verifier.here_checks > 0
        assert busy.first_failure() == -1


def test_checks_that_do_not_fit_a_record_travel_as_they_are_with_the_same_answer():
    block = checks(10)
    block[6] = (block[6][0], b"", block[6][2])  # an era not valid at the block: an empty message
    assert isinstance(signature_worker.pack_checks(block), list)
    assert isinstance(signature_worker.pack_checks(checks(3)), bytes)
    with SignatureVerifier(chunk=3) as verifier:
        assert verifier.submit(block).first_failure() == 6
        assert verifier.submit([]).first_failure() == -1


def test_slots_are_reused_over_many_blocks_and_a_cancelled_block_costs_nothing_more():
    with SignatureVerifier(chunk=8) as verifier:
        for number in range(3 * signature_worker.SLOTS):
            refused = verifier.submit(checks(16, 0))
            refused.cancel()  # its block failed before the signature stage
            assert refused.first_failure() == -1  # never consulted by the import; answers without waiting
            assert verifier.submit(checks(16, number % 16)).first_failure() == number % 16


def test_the_extrinsics_root_is_the_same_from_the_worker_or_from_here():
    from runtime.hashing import blake2b_256
    from runtime.types import compute_extrinsics_root

    extrinsics = [os.urandom(100) for _ in range(50)]
    expected = compute_extrinsics_root([blake2b_256(x) for x in extrinsics])
    with SignatureVerifier() as verifier:
        busy = verifier.submit(checks(2000))
        early = verifier.submit([], extrinsics)  # the worker is still on `busy`: computed here
        assert early.extrinsics_root() == expected
        busy.first_failure()
        late = verifier.submit([], extrinsics)
        wait_until_the_worker_is_done(verifier)
        assert late.extrinsics_root() == expected


def test_a_dead_worker_is_a_named_error_not_a_hang():
    with SignatureVerifier(chunk=8) as verifier:
        verifier._process.kill()  # the process this test started
        verifier._process.join(10)
        # what the worker never claimed is verified here: still the right answer
        assert verifier.submit(checks(16, 9)).first_failure() == 9
        with pytest.raises(SignatureWorkerFailed) as raised:  # a slot the dead worker never let go of
            for _ in range(signature_worker.SLOTS + 1):
                verifier.submit(checks(4)).first_failure()
        assert raised.value.code == "signature_worker_failed"


def test_many_blocks_in_flight_each_get_the_in_line_answer():
    """Races between the two sides' claims, a run's blocks queued ahead, answers asked at random moments."""
    import random

    rng = random.Random(12)
    good = checks(24)
    with SignatureVerifier(chunk=2) as verifier:
        queued = []
        for _ in range(150):
            block = list(good)
            for index in rng.sample(range(24), rng.choice([0, 0, 1, 2])):
                block[index] = (block[index][0], block[index][1], b"\x02" * 64)
            queued.append((block, verifier.submit(block)))
            if len(queued) > 3 or rng.random() < 0.3:
                block, shared = queued.pop(0)
                if rng.random() < 0.1:
                    time.sleep(0.002)  # the worker gets ahead
                assert shared.first_failure() == first_failure(block)
        for block, shared in queued:
            assert shared.first_failure() == first_failure(block)


def test_the_worker_does_not_outlive_an_importer_killed_without_closing_it(tmp_path):
    import signal
    import subprocess
    import sys

    script = ("import os, sys, time\n"
              "from consensus.signatures import SignatureVerifier\n"
              "verifier = SignatureVerifier()\n"
              "print(verifier._process.pid, flush=True)\n"
              "time.sleep(60)\n")
    importer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    try:
        worker = int(importer.stdout.readline())
        os.kill(importer.pid, signal.SIGKILL)  # the importer this test started
        importer.wait(10)
        deadline = time.monotonic() + 15
        while os.path.exists(f"/proc/{worker}") and "Z" not in open(f"/proc/{worker}/stat").read().split()[2]:
            assert time.monotonic() < deadline, "the worker outlived its importer"
            time.sleep(0.05)
    finally:
        if importer.poll() is None:
            importer.kill()
