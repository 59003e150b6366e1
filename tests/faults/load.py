"""Transfer load during a fault: senders bound to nodes, every acknowledged transfer recorded.

Each sender (an endowed account of the testnet spec) submits transfers to one node
with nonces it counts itself. A transfer counts as acknowledged only when the node's
author_submitExtrinsic returned its hash. When a call fails (the node is restarting,
paused or busy), the sender asks its node for the next nonce and goes on.
"""

from __future__ import annotations

import threading

from node.testnet.processes import LOAD_ACCOUNTS, TestnetNode
from runtime import crypto
from runtime.errors import GradchainError
from runtime.executive import sign_extrinsic
from runtime.pallets import balances

AMOUNT = 10**12
DESTINATION = crypto.keypair_from_uri("//Ferdie").public


class Sender(threading.Thread):
    def __init__(self, account: str, node: TestnetNode, genesis_hash: bytes, stop: threading.Event,
                 interval_s: float) -> None:
        super().__init__(name=f"load-{account}", daemon=True)
        self.keypair = crypto.keypair_from_uri(f"//{account}")
        self.node, self.genesis_hash, self.stop, self.interval_s = node, genesis_hash, stop, interval_s
        self.acknowledged: list[bytes] = []
        self.refused: list[str] = []

    @property
    def address(self) -> str:
        return "0x" + self.keypair.public.hex()

    def run(self) -> None:
        nonce = None
        while not self.stop.wait(self.interval_s):
            try:
                if nonce is None:
                    nonce = self.node.call("system_accountNextIndex", self.address, timeout=5)
                extrinsic = sign_extrinsic(self.keypair, balances.transfer(DESTINATION, AMOUNT), nonce=nonce,
                                           genesis_hash=self.genesis_hash)
                answer = self.node.call("author_submitExtrinsic", "0x" + extrinsic.encoded.hex(), timeout=5)
            except GradchainError as error:
                self.refused.append(error.message)
                nonce = None  # ask the node again: it may have lost or included what we sent
                continue
            if answer == "0x" + extrinsic.hash.hex():
                self.acknowledged.append(extrinsic.hash)
                nonce += 1


class TransferLoad:
    """One sender per target node, about `per_second` transfers per second in all."""

    def __init__(self, targets: list[TestnetNode], genesis_hash: bytes, per_second: float = 4) -> None:
        self.stop_event = threading.Event()
        interval = len(targets) / per_second
        self.senders = [Sender(account, node, genesis_hash, self.stop_event, interval)
                        for account, node in zip(LOAD_ACCOUNTS, targets)]

    def start(self) -> "TransferLoad":
        for sender in self.senders:
            sender.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for sender in self.senders:
            sender.join(15)

    def acknowledged(self) -> dict[bytes, str]:
        """{extrinsic hash: sender account} of every acknowledged transfer."""
        return {h: s.address for s in self.senders for h in s.acknowledged}

    def expected_nonces(self) -> dict[str, int]:
        """Each sender's on-chain nonce once everything it had acknowledged is included."""
        return {s.address: len(s.acknowledged) for s in self.senders}
