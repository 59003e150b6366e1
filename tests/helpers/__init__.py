"""Helpers shared by the test modules (none of them holds tests):

- `chain`: `TestChain`, a dev chain on a real LevelDB with a fake clock, the dev keys, and
  `next_block_context` for calling a pallet's functions directly;
- `training`: the training pallet tests' task config, commits and outcomes;
- `chain_nodes`: an author and a follower chain service on one fake clock, `author_and_import`;
- `useful_work_chain`: held-out data sealed to Alice, its task, and a round of five trainers' updates
  through two chain services (`run_round`);
- `forgeries`: what a lying trainer or author makes (`one_ulp`, `inflate_first_score`);
- `network_node`: `InProcessNode` (chain and network on a thread) and `RawPeer` (a scripted libp2p peer);
- `dev_node`: `RunningNode`, a real --dev node (authorship, JSON-RPC on a free port) on its own thread;
- `processes`: `LineReader` (a subprocess's lines under a deadline), `NodeProcess` (`gradchain` as a
  subprocess on free ports whose log tail is printed on failure), `gradchain` and `one_line_error`;
- `ports`: `free_port`, and `non_loopback_address` for a caller that is not on loopback;
- `threads`: `ThreadRunner`, threads whose exceptions fail the test that started them;
- `useful_work`: the digits task, trained updates and task rules for the useful-work tests;
- `wallet`: the wallet CLI run in-process, and the one-line-error check of the scripts;
- `crash_importer`, `crash_verifier`: the child processes the crash tests kill.
"""
