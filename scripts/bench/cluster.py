"""Moved: node processes are started in one place, node/testnet/processes.py (`gradchain testnet`, the
network demo, the multi-node tests, the fault harness and these benchmarks). This name stays only for
branches written against it; import from node.testnet.processes."""

import subprocess  # noqa: F401 - tests patch cluster_module.subprocess.Popen (the same module object)

from node.testnet.processes import (  # noqa: F401
    EXTRA, ROOT, VALIDATORS, Cluster, NodeProcess, free_port, tails, wait_until, write_spec,
)
