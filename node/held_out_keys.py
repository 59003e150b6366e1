"""A validator node's part in getting held-out keys to validators elected after a task was made.

Two duties, both on the chain thread after a block is imported (FinalityService calls `on_block`):

  * at an era change, a validator that holds a task's key seals it to each validator of the new
    set that lacks one (held_out_keys.reseal_held_out_key, submitted to the pool by itself); also
    when a block creates a task (its creator may have sealed to a set read before an election) and
    every RESEAL_RETRY_BLOCKS blocks (a reseal lost with a re-org, an evicted transaction, or a
    holder that was down at the era change would otherwise leave a newcomer without a key for a
    whole era). A call of this node still in the pool is not submitted twice;
  * when a block seals a key to this validator, it opens the task's held-out set with it and checks
    again the blocks above finality that it marked `verified` without checking that task's rounds.
    Until then the voter treats those blocks as unverifiable and votes for none of them nor their
    descendants: without the second check a newcomer would never vote for a round reported between
    its election and the key's arrival, and newcomers holding more than a third of the stake
    would stall finality for good.
"""

from __future__ import annotations

from typing import Callable

import structlog

from consensus.useful_work.key_resealing import reseal_calls
from node.chain_service import ChainService
from runtime.crypto import Keypair
from runtime.dispatch import Call
from runtime.pallets import held_out_keys, training, validators
from runtime.state import Overlay
from runtime.types import Block
from storage.block_status import VERIFIED

log = structlog.get_logger("held_out_keys")
RESEAL = f"{held_out_keys.pallet.name}.{held_out_keys.reseal_held_out_key.name}"
CREATE_TASK = f"{training.pallet.name}.{training.create_task.name}"
RESEAL_RETRY_BLOCKS = 16


class HeldOutKeys:
    """This validator's held-out key duties (module docstring); every method runs on the chain thread."""

    def __init__(self, chain: ChainService, keypair: Keypair | None, submit_call: Callable[[Call], None]) -> None:
        self.chain = chain
        self.keypair = keypair
        self.submit_call = submit_call

    def on_block(self, block: Block) -> None:
        """A block was imported (chain thread)."""
        if self.keypair is None:
            return
        if self.reseal_due(block):
            self.reseal(block)
        tasks = self.tasks_sealed_to_us(block)
        if tasks:
            self.check_again(block, tasks)

    def reseal_due(self, block: Block) -> bool:
        header = block.header
        if header.number % RESEAL_RETRY_BLOCKS == 0:
            return True
        if any(x.signed is not None and x.call.name == CREATE_TASK for x in block.extrinsics):
            return True
        store = self.chain.store
        parent_era = validators.CurrentEra.get(Overlay(store.state_view(header.parent_hash)))
        return validators.CurrentEra.get(Overlay(store.state_view(header.hash))) != parent_era

    def reseal(self, block: Block) -> None:
        """Seal the keys this validator holds to the validators of the set that lack them."""
        state = Overlay(self.chain.store.state_view(block.hash))
        pooled = self.pooled_reseals()
        calls = [c for c in reseal_calls(state, self.keypair, self.chain.blobs.get)
                 if (c.task, c.validator) not in pooled]
        for reseal in calls:
            self.submit_call(reseal.call)
        if calls:
            log.info("re-sealed held-out keys to new validators", keys=len(calls), number=block.header.number)

    def pooled_reseals(self) -> set[tuple[int, bytes]]:
        """(task, validator) of this node's reseal calls waiting in the pool."""
        pooled = set()
        for extrinsic in self.chain.pool.ready():
            if extrinsic.signed is not None and extrinsic.signed.signer == self.keypair.public \
                    and extrinsic.call.name == RESEAL:
                args = extrinsic.call.args_dict()
                pooled.add((int(args["task"]), bytes(args["validator"])))
        return pooled

    def tasks_sealed_to_us(self, block: Block) -> set[int]:
        """The tasks whose key `block` seals to this validator (the call may have failed: opening tells)."""
        tasks = set()
        for extrinsic in block.extrinsics:
            if extrinsic.signed is None or extrinsic.call.name != RESEAL:
                continue
            args = extrinsic.call.args_dict()
            if bytes(args["validator"]) == self.keypair.public:
                tasks.add(int(args["task"]))
        return tasks

    def check_again(self, block: Block, tasks: set[int]) -> None:
        """Open the tasks' held-out sets with the keys in `block`'s state, then check again every block of
        the best chain above finality that left a round of one of them unchecked."""
        state = Overlay(self.chain.store.state_view(block.hash))
        opened = {task for task in tasks if self.chain.work.open_held_out(state, task)}
        if not opened:
            return  # no key that opens the blob to its declared data: wait for another sealer
        waiting = self.unchecked_above_finality(opened)
        for block_hash in waiting:
            self.chain.verification.start(self.chain.store.block(block_hash))
        log.info("held-out key received", tasks=sorted(opened), number=block.header.number, checked_again=len(waiting))

    def unchecked_above_finality(self, tasks: set[int]) -> list[bytes]:
        """Blocks of the best chain above finality, oldest first, that left a round of `tasks` unchecked."""
        store = self.chain.store
        prefixes = tuple(f"task {task} round " for task in tasks)  # RoundWork names each unchecked round so
        found = []
        header = store.best_header()
        while header is not None and header.number > store.finalized_header().number:
            status = store.verification_status(header.hash)
            unchecked = status.unchecked if status is not None and status.state == VERIFIED else ()
            if any(u.startswith(prefixes) for u in unchecked):
                found.append(header.hash)
            header = store.header(header.parent_hash)
        return found[::-1]
