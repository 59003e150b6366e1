"""Helpers shared by the test modules (none of them holds tests):

- `chain`: `TestChain`, a dev chain on a real LevelDB with a fake clock, and the dev keys;
- `dev_node`: `RunningNode`, a real --dev node (authorship, JSON-RPC on a free port) on its own thread;
- `processes`: `LineReader` (a subprocess's lines under a deadline), `NodeProcess` (`gradchain` as a
  subprocess on free ports whose log tail is printed on failure);
- `ports`: `free_port`, and `non_loopback_address` for a caller that is not on loopback;
- `threads`: `ThreadRunner`, threads whose exceptions fail the test that started them;
- `useful_work`: the digits task, trained updates and task rules for the useful-work tests;
- `wallet`: the wallet CLI run in-process, and the one-line-error check of the scripts;
- `crash_importer`, `crash_verifier`: the child processes the crash tests kill.
"""
