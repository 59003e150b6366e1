"""The one LevelDB of a node (plyvel), behind a small interface with an atomic batch.

Durability: every block is written in one LevelDB WriteBatch, so a crash at any
instant leaves either all of it or none of it. Writes go through LevelDB's log
before the call returns, which survives a killed process; `sync=True` also
survives a power cut at the cost of an fsync per block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping

import plyvel

from runtime.errors import GradchainError


class DatabaseError(GradchainError):
    code = "database"


class DatabaseLocked(DatabaseError):
    code = "database_locked"


class Database:
    def __init__(self, path: str | Path, *, sync: bool = False, cache_mb: int = 64) -> None:
        self.path = Path(path)
        self.sync = sync
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = plyvel.DB(str(self.path), create_if_missing=True, lru_cache_size=cache_mb << 20,
                                 write_buffer_size=16 << 20, max_open_files=512,
                                 bloom_filter_bits=10)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise DatabaseLocked(f"the database at {self.path} is in use by another process; "
                                     "stop that node or choose another --base-path") from None
            raise DatabaseError(f"cannot open the database at {self.path}: {exc}") from None
        except plyvel.CorruptionError as exc:
            raise DatabaseError(f"the database at {self.path} is corrupt ({exc}); "
                                "run purge-chain and sync again") from None
        except OSError as exc:
            raise DatabaseError(f"cannot open the database at {self.path}: {exc.strerror}") from None

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (),
              more_puts: Iterable[Mapping[bytes, bytes]] = (), *, sync: bool | None = None) -> None:
        """Apply puts (and each of more_puts, in order) and deletes atomically (one WriteBatch).
        `sync=True` fsyncs this write whatever the database's default (a finality vote must survive a crash)."""
        with self._db.write_batch(transaction=True, sync=self.sync if sync is None else sync) as batch:
            for key in deletes:
                batch.delete(key)
            for mapping in (puts, *more_puts):
                for key, value in mapping.items():
                    batch.put(key, value)

    def write_in_batches(self, pairs: Iterable[tuple[bytes, bytes]], batch_size: int = 100_000) -> None:
        """Apply the puts in batches of `batch_size` (not atomic as a whole): for a large genesis, which in one
        batch made LevelDB hold it all in one memtable and one log, replayed at every open (30 s and 600 MB
        at a million accounts)."""
        batch: dict[bytes, bytes] = {}
        for key, value in pairs:
            batch[key] = value
            if len(batch) >= batch_size:
                self.write(batch)
                batch = {}
        if batch:
            self.write(batch)

    def keys_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        return self._db.iterator(prefix=prefix, include_value=False)

    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._db.iterator(prefix=prefix)

    def keys_between(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """Keys in [start, stop), in key order (or reversed): for paging through an index."""
        return self._db.iterator(start=start, stop=stop, reverse=reverse, include_value=False)

    def items_between(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self._db.iterator(start=start, stop=stop, reverse=reverse)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed
