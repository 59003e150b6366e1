"""A report's dispatch info carries its useful work: the ExtrinsicSuccess event (and the apply outcome)
of a report_useful_work inherent weigh the declared weight plus the rounds' useful-work weight, which is
what the block's weight limit counted."""

from __future__ import annotations

import dataclasses

from runtime import api as runtime_api
from runtime.pallets import system, training
from runtime.pallets.training import ModelSpec, RoundReport
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis
from tests.helpers.training import outcome
from tests.helpers.training import task_config as config

EVE = DEV_KEYS["Eve"]


def test_a_reports_success_event_weighs_its_useful_work(tmp_path):
    genesis = dev_genesis()
    task = config(spec=ModelSpec("mlp", (256, 256, 10)), max_updates=1, held_out_subset=200, commit_blocks=1,
                  reveal_blocks=1, rounds=1)
    params = dataclasses.replace(genesis.parameters, max_task_work=max(genesis.parameters.max_task_work,
                                                                       training.task_work(task)))
    chain = TestChain(tmp_path / "db", dataclasses.replace(genesis, parameters=params))
    try:
        for _ in range(2):
            assert outcome(chain.author_block([chain.sign(EVE, training.create_task(task))])).success
        chain.author_block()
        chain.author_block()
        state = chain.overlay()
        reports = []
        for task_id in range(2):
            current = training.Tasks.get(state, task_id)
            reports.append(RoundReport(task_id, 0, runtime_api.round_seed(state, current), training.Score(0, 0),
                                       None, (), None, None))
        built = chain.author_block(useful_work=tuple(reports))
        index = next(i for i, extrinsic in enumerate(built.block.extrinsics)
                     if extrinsic.signed is None and extrinsic.call.name == "training.report_useful_work")
        declared = training.report_useful_work.weight_of(built.block.extrinsics[index].call)
        useful_work = 2 * training.round_work_weight(task, 0)
        assert useful_work > 0
        events = [record.event for record in system.Events.get(chain.overlay())
                  if record.extrinsic_index == index and isinstance(record.event, system.ExtrinsicSuccess)]
        assert [event.weight for event in events] == [declared + useful_work]
        assert built.outcomes[index].weight == declared + useful_work
    finally:
        chain.close()
