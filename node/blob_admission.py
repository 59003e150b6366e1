"""Who may put a blob into this node's store over RPC, and how much.

The rule, built on what the chain can know when an upload arrives:

1. A blob the chain already refers to (an active task's initial or current model, its
   held-out set, a revealed update, an adopted model: `runtime.api.active_task_blobs` at
   the best block) is consensus data: anyone may upload it, unsigned, and it may use the store's
   reserve (storage.blobs REFERENCED tier).
2. Anything else is *provisional*: the chain may refer to it soon, but cannot say so yet.
   A trainer uploads its update before it commits (the commitment hides the hash until
   the reveal) and a task creator uploads the initial model and the held-out set before
   create_task names them. Such an upload must be signed by an account (runtime.uploads)
   that holds at least `min_uploader_balance` on chain, and is admitted within:
     - that account's quota of provisional bytes (`account_quota_bytes`), counted until
       the chain refers to the blob or garbage collection removes it (unreferenced blobs
       are collected after the node's grace period, 600 blocks by default);
     - that account's upload rate (`uploads_per_minute`, a token bucket);
     - the store's space outside the reserve. When that is full, the upload evicts the
       oldest provisional blobs of the account holding the most provisional bytes, if
       that account holds more than the uploader would after this upload: a flood from a
       few accounts is pushed out by the next honest upload, while nobody can evict a
       lighter user. Otherwise: HTTP 507 with a JSON reason.
3. What a validator computes or verifies itself never goes through here and is never
   refused for space (storage.blobs VERIFIED tier).

Limits are per node (not consensus); the per-account record lives in memory, so a
restart forgets quotas (the blobs themselves stay until collected).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from runtime import crypto
from runtime import api as runtime_api
from runtime.pallets import system
from runtime.state import Overlay
from runtime.uploads import upload_message
from storage.blobs import PROVISIONAL, REFERENCED, BlobError, BlobStore, BlobStoreFull


class BlobUploadUnsigned(BlobError):
    code = "blob_upload_unsigned"
    http_status = 401


class BlobUploaderNotAllowed(BlobError):
    code = "blob_uploader_not_allowed"
    http_status = 403


class BlobQuotaExceeded(BlobError):
    code = "blob_quota_exceeded"
    http_status = 429


class BlobRateLimited(BlobError):
    code = "blob_rate_limited"
    http_status = 429


@dataclass(frozen=True)
class AdmissionLimits:
    account_quota_bytes: int = 64 * 1024 * 1024
    uploads_per_minute: float = 60.0  # sustained; bursts up to `burst_uploads`
    burst_uploads: int = 20
    min_uploader_balance_deposits: int = 100  # in existential deposits (1 GRAD on the dev chain)


@dataclass
class _Account:
    """One uploader's provisional blobs (hash -> size, oldest first) and its rate bucket."""

    blobs: dict[bytes, int] = field(default_factory=dict)
    tokens: float = 0.0
    refilled_at: float = 0.0

    @property
    def held(self) -> int:
        return sum(self.blobs.values())


class BlobAdmission:
    """Runs on the chain thread (it reads the best state and writes the store)."""

    def __init__(self, blobs: BlobStore, *, genesis_hash: bytes, limits: AdmissionLimits = AdmissionLimits(),
                 clock=time.monotonic) -> None:
        self.blobs = blobs
        self.genesis_hash = genesis_hash
        self.limits = limits
        self.clock = clock
        self._accounts: dict[bytes, _Account] = defaultdict(_Account)
        self._referenced: tuple[bytes, frozenset[bytes]] | None = None  # (best hash, referenced blobs)

    def store(self, blob_hash: bytes, data: bytes, *, state, best_hash: bytes, best_number: int,
              uploader: tuple[bytes, bytes] | None) -> bool:
        """Admit and store one upload (already hash-checked by the caller or by the store); False if known."""
        referenced = self._referenced_at(state, best_hash)
        if blob_hash in referenced:
            self._make_room(None, len(data), REFERENCED)
            return self.blobs.put(blob_hash, data, now_block=best_number, admission=REFERENCED)
        if self.blobs.info(blob_hash) is not None:
            return False
        account = self._check_uploader(blob_hash, state, uploader)
        record = self._accounts[account]
        if record.held + len(data) > self.limits.account_quota_bytes:
            raise BlobQuotaExceeded(f"the account holds {record.held} bytes of uploads the chain does not refer to "
                                    f"yet; its quota is {self.limits.account_quota_bytes} (they count until a "
                                    "commit, reveal or task names them, or they are collected)")
        self._take_token(record)
        self._make_room(account, len(data), PROVISIONAL)
        created = self.blobs.put(blob_hash, data, now_block=best_number, admission=PROVISIONAL)
        if created:
            record.blobs[blob_hash] = len(data)
        return created

    def provisional_bytes(self, account: bytes) -> int:
        return self._accounts[account].held if account in self._accounts else 0

    # --- the checks ---------------------------------------------------------------------

    def _check_uploader(self, blob_hash: bytes, state, uploader: tuple[bytes, bytes] | None) -> bytes:
        if uploader is None:
            raise BlobUploadUnsigned("the chain does not refer to this blob (yet): sign the upload with an "
                                     "account (X-Gradchain-Account and X-Gradchain-Signature headers)")
        account, signature = uploader
        if not crypto.verify(account, upload_message(self.genesis_hash, blob_hash), signature):
            raise BlobUploadUnsigned("the upload's signature does not verify for this account, chain and blob")
        info = runtime_api.account(state, account)
        minimum = system.Params.get(Overlay(state)).existential_deposit * self.limits.min_uploader_balance_deposits
        if info is None or info.free + info.reserved < minimum:
            raise BlobUploaderNotAllowed(f"an account needs a balance of at least {minimum} planck to upload blobs "
                                         "the chain does not refer to yet")
        return account

    def _take_token(self, record: _Account) -> None:
        now = self.clock()
        if record.refilled_at == 0.0:
            record.tokens, record.refilled_at = float(self.limits.burst_uploads), now
        record.tokens = min(float(self.limits.burst_uploads),
                            record.tokens + (now - record.refilled_at) * self.limits.uploads_per_minute / 60)
        record.refilled_at = now
        if record.tokens < 1:
            raise BlobRateLimited(f"more than {self.limits.uploads_per_minute:g} uploads a minute from this account; "
                                  "slow down")
        record.tokens -= 1

    def _make_room(self, uploader: bytes | None, size: int, admission: str) -> None:
        """Evict the heaviest uploader's oldest provisional blobs while it holds more than `uploader`
        would (a blob the chain refers to, uploader None, may evict any provisional blob)."""
        if size > self.blobs.max_blob_bytes:
            return  # the store names the real problem
        mine = self._accounts[uploader].held + size if uploader is not None else -1
        while self.blobs.free_bytes(admission) < size:
            heaviest = max((a for a in self._accounts if self._accounts[a].blobs),
                           key=lambda a: self._accounts[a].held, default=None)
            if heaviest is None or heaviest == uploader or self._accounts[heaviest].held <= mine:
                raise BlobStoreFull(f"the node's blob store is full ({self.blobs.total_bytes} of "
                                    f"{self.blobs.max_total_bytes} bytes used, {self.blobs.reserved_bytes} reserved "
                                    "for blobs the chain refers to); try another node or later")
            victim = self._accounts[heaviest]
            oldest = next(iter(victim.blobs))
            del victim.blobs[oldest]
            self.blobs.delete([oldest])

    # --- what the chain refers to ---------------------------------------------------------

    def _referenced_at(self, state, best_hash: bytes) -> frozenset[bytes]:
        """What the best block's state refers to; once per new best block, settled uploads are forgotten."""
        if self._referenced is None or self._referenced[0] != best_hash:
            self._referenced = (best_hash, frozenset(runtime_api.active_task_blobs(state)))
            self._forget_settled(self._referenced[1])
        return self._referenced[1]

    def _forget_settled(self, referenced: frozenset[bytes]) -> None:
        """Blobs the chain now refers to, or that were collected, no longer count against anyone."""
        for account, record in list(self._accounts.items()):
            for blob_hash in [h for h in record.blobs if h in referenced or self.blobs.info(h) is None]:
                del record.blobs[blob_hash]
            if not record.blobs and record.tokens >= self.limits.burst_uploads:
                del self._accounts[account]


__all__ = ["AdmissionLimits", "BlobAdmission", "BlobUploadUnsigned", "BlobUploaderNotAllowed", "BlobQuotaExceeded",
           "BlobRateLimited"]
