"""Child process of the verdict crash test: import blocks whose useful-work check never finishes, then wait.

    python tests/helpers/crash_verifier.py BASE_PATH BLOCKS_FILE

Prints "committed <hash>" once the last block is committed (status pending), then
sleeps until killed: the kill lands between the commit and the verdict.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.chain_service import ChainService  # noqa: E402
from node.chain_setup import ChainPaths, load_chain_spec  # noqa: E402
from node.clock import FakeClock  # noqa: E402
from runtime import codec, crypto  # noqa: E402
from runtime.types import decode_block  # noqa: E402


def main(base_path: str, blocks_file: str) -> None:
    config = load_chain_spec(None, dev=True)
    service = ChainService(config, ChainPaths(Path(base_path), config.chain_id), clock=FakeClock(start_ms=10**15),
                           validator_key=crypto.dev_keypair("Alice"))
    service._open()
    service.work.check_gathered = lambda gathered: time.sleep(3600)  # the verdict never comes
    blocks = [decode_block(raw) for raw in codec.unpack(Path(blocks_file).read_bytes(), max_length=1 << 30)]
    for block in blocks:
        service.import_block_now(block).raise_for_error()
    print("committed", blocks[-1].hash.hex(), service.store.verification_status(blocks[-1].hash).state, flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
