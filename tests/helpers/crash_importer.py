"""Child process of the crash-safety test: import blocks from a file until killed.

    python tests/helpers/crash_importer.py DB_PATH BLOCKS_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from consensus.import_queue import ImportQueue  # noqa: E402
from runtime import codec  # noqa: E402
from runtime.executive import Executive  # noqa: E402
from runtime.genesis import build_genesis_state, load_genesis  # noqa: E402
from runtime.types import decode_block  # noqa: E402
from storage.chainstore import ChainStore  # noqa: E402

PRUNING = 16  # small, so pruning also runs under the kills


def main(db_path: str, blocks_file: str) -> None:
    config = load_genesis(Path(__file__).resolve().parents[2] / "genesis.json")
    blocks = [decode_block(raw) for raw in codec.unpack(Path(blocks_file).read_bytes(), max_length=1 << 30)]
    chain = ChainStore.open(db_path, pruning=PRUNING)
    genesis_hash = chain.initialize(build_genesis_state(config))
    importer = ImportQueue(chain, Executive(genesis_hash), slot_duration_ms=config.slot_duration_ms,
                           clock_ms=lambda: 10**15)
    print("ready", flush=True)
    for block in blocks[chain.best_header().number:]:
        result = importer.import_block(block).raise_for_error()
        if result.is_best and result.status.state == "verified":
            chain.set_finalized(block.hash)
    chain.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
