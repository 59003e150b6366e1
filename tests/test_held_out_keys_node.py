"""At an era change, a validator node that holds a task's held-out key re-seals it by itself to the newly
elected validator, which can then open the held-out set."""

from __future__ import annotations

import asyncio

import torch

from consensus.import_queue import expected_author
from consensus.useful_work.key_resealing import open_sealed_key, working_key
from consensus.useful_work.secrecy import encrypt_held_out
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, dev_spec
from node.clock import FakeClock
from node.finality_service import FinalityService
from runtime.executive import sign_extrinsic
from runtime.genesis import parse_genesis
from runtime.hashing import blake2b_256
from runtime.pallets import held_out_keys, validators
from runtime.pallets.training import SealedKey, create_task
from runtime.state import Overlay
from tests.helpers.chain import DEV_KEYS, dev_genesis
from tests.helpers.training import task_config

ALICE, EVE = DEV_KEYS["Alice"], DEV_KEYS["Eve"]


def short_era_dev_config():
    spec = dev_spec(dev_genesis().spec)
    spec["parameters"] = dict(spec["parameters"], era_length=4, unbonding_period=100)
    spec["offences"] = {"evidence_window": 10}
    return parse_genesis(spec, "short-era dev spec")


def test_a_newly_elected_validator_receives_the_held_out_key_at_the_era_change(tmp_path):
    config = short_era_dev_config()
    clock = FakeClock(start_ms=0)
    chain = ChainService(config, ChainPaths(tmp_path, config.chain_id), clock=clock, validator_key=ALICE)
    finality = FinalityService(chain, ALICE, clock)
    features, labels = torch.zeros(3, 2), torch.tensor([0, 1, 0])
    ciphertext, sealed = encrypt_held_out(features, labels, [ALICE.public])
    key = open_sealed_key(sealed[ALICE.public], ALICE)
    task = task_config(held_out=blake2b_256(ciphertext), held_out_size=len(ciphertext),
                       sealed_keys=(SealedKey(ALICE.public, sealed[ALICE.public]),))

    async def main():
        await chain.start()
        await finality.start()
        try:
            chain.blobs.put(blake2b_256(ciphertext), ciphertext, now_block=0)
            genesis = chain.store.genesis_hash
            stake = config.parameters.min_validator_stake
            for nonce, call in enumerate((validators.bond(stake), validators.validate(), create_task(task))):
                await chain.submit(sign_extrinsic(EVE, call, nonce=nonce, genesis_hash=genesis))
            slot = 0
            while chain.store.best_header().number < 7:
                slot += 1
                clock.time_ms = slot * config.slot_duration_ms
                state = Overlay(chain.store.state_view(chain.store.best_hash))
                if expected_author([v.account for v in validators.Validators.get(state)], slot) == ALICE.public:
                    await chain.author(slot, ALICE, clock.now_ms() + config.slot_duration_ms)
            state = Overlay(chain.store.state_view(chain.store.best_hash))
            assert EVE.public in [v.account for v in validators.Validators.get(state)]  # elected at block 4
            [resealed] = held_out_keys.Resealed.get(state, (0, EVE.public))
            assert resealed.sealer == ALICE.public and resealed.at > 4
            assert working_key(state, 0, EVE, ciphertext) == key
        finally:
            await finality.stop()
            await chain.stop()

    asyncio.run(main())
