"""wallet.py's commands for task creators and reward earners (see `add_commands`).

    wallet.py task create NAME --held-out FILE.npz --architecture mlp --params 64,64,10
                          --reward-per-round AMOUNT --rounds N [--initial-model FILE.pt | --seed N] ...
    wallet.py task watch TASK [--timeout S]           one line per closed round until the task ends
    wallet.py task cancel NAME TASK [--watch]          creator only; the unspent pool comes back
    wallet.py task download TASK --output FILE [--round R]
    wallet.py claim NAME [--watch]                     pay out the rewards accrued to NAME

Models and the held-out set are handled by `scripts._tasks` and `consensus.useful_work`, which
import torch (about 3 s): they are imported inside the task commands, so other commands never wait.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rpc.client import Client
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.hashing import blake2b_256
from runtime.pallets import held_out_keys, training
from runtime.types import Extrinsic, SignedData
from scripts._common import CliError, add_era_options, era_period_of, short_hex, signing_era
from scripts._task_watch import cmd_task_watch, require_task
from scripts.wallet import Session, WalletEntry, WalletStore, read_passphrase, submit, watch_submission

if TYPE_CHECKING:
    import torch

    from consensus.useful_work import ModelSpec, ModelVersion
    from runtime.crypto import Keypair
    from scripts._tasks import TaskOptions

AGGREGATIONS = tuple(training.AGGREGATIONS.values())
METRICS = tuple(training.METRICS.values())


# --- command line ---------------------------------------------------------------------------


def add_commands(commands, transaction_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `task` group and `claim`, on wallet.py's parser; `transaction_options` adds --tip/--nonce/--watch."""
    group = commands.add_parser("task", help="create, watch, cancel and download training tasks")
    tasks = group.add_subparsers(dest="task_command", required=True, metavar="TASK_COMMAND")

    create = tasks.add_parser("create", help="publish a task: encrypted held-out set, initial model, reward pool")
    create.add_argument("sender", metavar="NAME", help="the creator's wallet; the reward pool is reserved from it")
    create.add_argument("--held-out", type=Path, required=True, metavar="FILE.npz",
                        help="features float32 [n, d] and labels int64 [n]; only validators can read it on chain")
    create.add_argument("--architecture", required=True, help="logistic_regression, mlp or small_cnn")
    create.add_argument("--params", required=True, help="its integers: mlp input_dim,hidden,classes; "
                        "logistic_regression input_dim,classes; small_cnn input_dim,channels,classes")
    initial = create.add_mutually_exclusive_group()
    initial.add_argument("--initial-model", type=Path, metavar="FILE.pt",
                         help="a torch state dict (e.g. from `task download`) instead of a fresh model")
    initial.add_argument("--seed", type=int, default=0, help="seed of the fresh initial model (default 0)")
    create.add_argument("--reward-per-round", required=True, metavar="AMOUNT",
                        help="planck as a whole number, or tokens as a decimal or with the symbol ('100 GRAD')")
    create.add_argument("--rounds", type=at_least(1), required=True)
    create.add_argument("--commit-blocks", type=at_least(1), default=5, help="default %(default)s")
    create.add_argument("--reveal-blocks", type=at_least(1), default=2, help="default %(default)s")
    create.add_argument("--bond", metavar="AMOUNT", help="per update; burned if its blob is unusable, forfeited to "
                                                         "the round if never revealed or a copy (default 10 tokens)")
    create.add_argument("--max-samples", type=at_least(1), default=training.DEFAULT_MAX_SAMPLES,
                        help="cap on the samples an update's weight counts (default %(default)s)")
    create.add_argument("--max-share-ppm", type=at_least(1), default=training.DEFAULT_MAX_SHARE_PPM,
                        help="largest share (ppm) of a round's weight one update holds (default %(default)s)")
    create.add_argument("--copy-distance-ppm", type=int, default=training.DEFAULT_COPY_DISTANCE_PPM,
                        help="an update within this sine (ppm) of an earlier one is a copy (default %(default)s)")
    create.add_argument("--aggregation", choices=AGGREGATIONS, default="fedavg")
    create.add_argument("--trim", type=int, default=0, help="updates dropped at each end by trimmed_mean")
    create.add_argument("--metric", choices=METRICS, default="loss", help="what contributions are measured in")
    create.add_argument("--subset", type=at_least(1), default=256, help="held-out examples scored per round")
    create.add_argument("--max-update-norm", type=float, default=8.0, help="L2 bound of an update (default 8.0)")
    create.add_argument("--max-update-bytes", type=at_least(1), help="default 1 MiB, or the model's size if larger")
    create.add_argument("--min-improvement-ppm", type=int,
                        help="least contribution (ppm of the metric) an accepted update makes (default 500)")
    create.add_argument("--min-relative-ppm", type=int,
                        help="... and least share (ppm) of the round's best contribution (default 300000)")
    create.add_argument("--timeout", type=float, default=120, help="seconds to wait for the task to be created")
    add_era_options(create)
    create.set_defaults(handler=cmd_task_create)

    watch = tasks.add_parser("watch", help="follow a task round by round until it ends")
    watch.add_argument("task_id", type=at_least(0), metavar="TASK")
    watch.add_argument("--timeout", type=float, help="give up after this many seconds (default: until it ends)")
    watch.set_defaults(handler=cmd_task_watch)

    cancel = tasks.add_parser("cancel", help="end a task early and take back its unspent pool (creator only)")
    cancel.add_argument("sender", metavar="NAME", help="the creator's wallet")
    cancel.add_argument("task_id", type=at_least(0), metavar="TASK")
    transaction_options(cancel)
    cancel.set_defaults(handler=cmd_task_cancel)

    download = tasks.add_parser("download", help="save a task's model as a torch state dict")
    download.add_argument("task_id", type=at_least(0), metavar="TASK")
    download.add_argument("--output", "-o", type=Path, required=True, metavar="FILE")
    download.add_argument("--round", type=int, help="the model after this round closed (default: the current one)")
    download.set_defaults(handler=cmd_task_download)

    claim = commands.add_parser("claim", help="pay out the training rewards accrued to a wallet")
    claim.add_argument("sender", metavar="NAME")
    transaction_options(claim)
    claim.set_defaults(handler=cmd_claim)


def at_least(minimum: int) -> Callable[[str], int]:
    def whole(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least {minimum}")
        return int(text)
    return whole


# --- task create ---------------------------------------------------------------------------


def cmd_task_create(args: argparse.Namespace, store: WalletStore) -> int:
    from consensus.useful_work.secrecy import encrypt_held_out, held_out_plaintext
    from scripts._tasks import task_config, validator_keys

    spec = parse_spec(args.architecture, args.params)
    features, labels = read_held_out(args.held_out, spec)
    model = initial_model(args, spec)
    session = Session(args, store)
    creator, fmt = store.load(args.sender), session.chain.format_balance
    model_blob = model.to_blob()
    options = task_options(args, session, len(model_blob))
    validators = validator_keys(session.client)
    if not validators:
        raise CliError("the chain has no validators to seal the held-out key to")
    ciphertext, sealed = encrypt_held_out(features, labels, validators)
    held_out_hash = blake2b_256(ciphertext)
    config = task_config(spec, blake2b_256(model_blob), held_out_hash, len(ciphertext), sealed, options)
    pool = options.reward_per_round * options.rounds
    summary = (f"create a task ({spec.architecture} {','.join(map(str, spec.params))}, {options.rounds} rounds of "
               f"{fmt(options.reward_per_round)}) from {creator.name}: reserves the pool {fmt(pool)}")
    keypair, nonce = submit_with_blobs(session, creator, training.create_task(config), summary, pool=pool,
                                       blobs=(model_blob, ciphertext))
    created = find_created_task(session.client, creator.public, held_out_hash)
    # The plaintext's hash on chain lets a validator elected later check a key re-sealed to it: the cipher
    # does not commit to its key, so without the hash a forged key could open the blob to other data.
    declare = held_out_keys.declare_held_out_plaintext(created, blake2b_256(held_out_plaintext(features, labels)))
    era, birth_hash = signing_era(session.client, era_period_of(args))
    print(f"declare the held-out set's plaintext hash of task {created}", flush=True)
    watch_submission(session, sign_extrinsic(keypair, declare, nonce=nonce + 1,
                                             genesis_hash=session.client.genesis_hash(), era=era,
                                             birth_hash=birth_hash))
    print(f"task {created} created: held-out set {short_hex('0x' + held_out_hash.hex(), 16)} "
          f"({labels.shape[0]} examples) sealed to {len(validators)} validator(s), initial model "
          f"{short_hex('0x' + blake2b_256(model_blob).hex(), 16)}")
    print(f"follow it with: wallet.py task watch {created}")
    return 0


def parse_spec(architecture: str, params: str) -> ModelSpec:
    from consensus.useful_work import ModelSpec, ModelError

    try:
        numbers = tuple(int(part) for part in params.split(","))
    except ValueError:
        raise CliError(f"bad --params {params!r}: give whole numbers separated by commas, like 64,64,10") from None
    try:
        return ModelSpec.from_params(architecture, numbers)
    except ModelError as exc:
        raise CliError(f"--architecture/--params: {exc.message}") from None


def read_held_out(path: Path, spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out set of an .npz file, checked against the spec the validators will score it with."""
    import numpy as np
    import torch

    if not path.is_file():
        raise CliError(f"--held-out: no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CliError(f"{path}: not a NumPy .npz file ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile) or not {"features", "labels"} <= set(data.files):
        raise CliError(f"{path}: needs the arrays 'features' and 'labels' (numpy.savez(path, features=..., "
                       f"labels=...))")
    with data:
        features, labels = data["features"], data["labels"]
    if features.dtype.kind not in "fiu" or labels.dtype.kind not in "iu":
        raise CliError(f"{path}: features must be numbers and labels whole numbers (got {features.dtype} and "
                       f"{labels.dtype})")
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0] or not labels.shape[0]:
        raise CliError(f"{path}: needs features [n, d] and labels [n] with n > 0; got features "
                       f"{list(features.shape)} and labels {list(labels.shape)}")
    if features.shape[1] != spec.input_dim:
        raise CliError(f"{path}: the features have {features.shape[1]} columns but the {spec.architecture} spec "
                       f"takes input_dim {spec.input_dim}")
    if labels.min() < 0 or labels.max() >= spec.classes:
        raise CliError(f"{path}: labels run from {labels.min()} to {labels.max()}; the spec has {spec.classes} "
                       f"classes (0..{spec.classes - 1})")
    features32 = np.ascontiguousarray(features, dtype=np.float32)
    if not np.isfinite(features32).all():
        raise CliError(f"{path}: some features are NaN or infinite (as float32)")
    return torch.from_numpy(features32), torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def initial_model(args: argparse.Namespace, spec: ModelSpec) -> ModelVersion:
    """A fresh model from --seed, or the state dict in --initial-model, checked against the spec."""
    import pickle

    import torch

    from consensus.useful_work import ModelError, ModelVersion, build_model, state_of

    if args.initial_model is None:
        return ModelVersion.from_weights(spec, state_of(build_model(spec, args.seed)))
    path = args.initial_model
    if not path.is_file():
        raise CliError(f"--initial-model: no such file: {path}")
    try:
        weights = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise CliError(f"{path}: not a torch state dict of tensors ({reason})") from None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CliError(f"{path}: not a state dict (a dict of parameter names to tensors)")
    try:
        return ModelVersion.from_weights(spec, weights)
    except ModelError as exc:
        raise CliError(f"{path}: {exc.message}") from None


def task_options(args: argparse.Namespace, session: Session, model_bytes: int) -> TaskOptions:
    """The task's parameters, checked the way the runtime will check them (so a mistake costs no fee)."""
    from scripts._tasks import TaskOptions

    defaults = TaskOptions()
    if args.min_improvement_ppm is None:
        args.min_improvement_ppm = defaults.min_improvement_ppm
    if args.min_relative_ppm is None:
        args.min_relative_ppm = defaults.min_relative_ppm
    if args.trim and args.aggregation != "trimmed_mean":
        raise CliError("--trim is used by --aggregation trimmed_mean only")
    if not 0 <= args.trim <= 255:
        raise CliError("--trim must be 0..255")
    if not 0 <= args.min_improvement_ppm <= 1_000_000 or not 0 <= args.min_relative_ppm <= 1_000_000:
        raise CliError("--min-improvement-ppm and --min-relative-ppm are parts per million: 0..1000000")
    if args.commit_blocks + args.reveal_blocks > training.MAX_WINDOW_BLOCKS:
        raise CliError(f"--commit-blocks + --reveal-blocks is at most {training.MAX_WINDOW_BLOCKS} (the state pruning "
                       f"window)")
    if args.max_share_ppm > 1_000_000 or not 0 <= args.copy_distance_ppm <= 1_000_000:
        raise CliError("--max-share-ppm is 1..1000000 and --copy-distance-ppm 0..1000000 (parts per million)")
    if args.subset > training.MAX_SUBSET:
        raise CliError(f"--subset is at most {training.MAX_SUBSET}")
    if not 0 < args.max_update_norm < 2**32:  # also refuses nan
        raise CliError("--max-update-norm must be a positive number")
    max_update_bytes = args.max_update_bytes or max(defaults.max_update_bytes, model_bytes)
    if not model_bytes <= max_update_bytes < 2**32:
        raise CliError(f"--max-update-bytes must be from {model_bytes} (the size of an update of this model) to "
                       f"2**32 - 1, not {max_update_bytes}")
    bond = defaults.bond if args.bond is None else session.chain.parse_amount(args.bond)
    return TaskOptions(
        reward_per_round=session.amount(args.reward_per_round), rounds=args.rounds,
        commit_blocks=args.commit_blocks, reveal_blocks=args.reveal_blocks,
        min_improvement_ppm=args.min_improvement_ppm, min_relative_ppm=args.min_relative_ppm,
        metric=args.metric, aggregation=args.aggregation,
        trim=args.trim, held_out_subset=args.subset, max_update_bytes=max_update_bytes,
        max_update_norm=args.max_update_norm, bond=bond, max_samples=args.max_samples,
        max_share_ppm=args.max_share_ppm, copy_distance_ppm=args.copy_distance_ppm)


def submit_with_blobs(session: Session, sender: WalletEntry, call, summary: str, *, pool: int,
                      blobs: tuple[bytes, ...]) -> tuple[Keypair, int]:
    """wallet.submit for a call whose blobs must be on the node first: every check before the passphrase,
    the uploads after it (a wrong passphrase uploads nothing), then follow the call to finalized.
    The unlocked key and the nonce it used, for a follow-up call without asking again."""
    client, chain, fmt = session.client, session.chain, session.chain.format_balance
    address = chain.address(sender.public)
    nonce = client.next_index(address)
    era, birth_hash = signing_era(client, era_period_of(session.args))
    twin = Extrinsic(SignedData(sender.public, bytes(crypto.SIGNATURE_LENGTH), era, nonce, 0), call)
    fee, free = client.query_fee(twin), client.account(address).free
    if free < pool + fee:
        raise CliError(f"insufficient funds: {sender.name} has {fmt(free)} free; the reward pool (reward per "
                       f"round x rounds) is {fmt(pool)} + fee {fmt(fee)}")
    keypair = session.store.unlock(sender, read_passphrase(session.args))
    from scripts._tasks import upload_headers

    for blob in blobs:
        client.put_blob(blob, headers=upload_headers(keypair, client.genesis_hash(), blob))
    extrinsic = sign_extrinsic(keypair, call, nonce=nonce, genesis_hash=client.genesis_hash(), era=era,
                               birth_hash=birth_hash)
    print(f"{summary}; fee {fmt(fee)}, nonce {nonce}", flush=True)
    watch_submission(session, extrinsic)  # a CliError if the call failed
    return keypair, nonce


def find_created_task(client: Client, creator: bytes, held_out_hash: bytes) -> int:
    """The id of the creator's task with this held-out blob (its key is fresh, so the hash is unique)."""
    for task in client.call("training_tasks"):
        if task["creator"] == "0x" + creator.hex() and task["config"]["held_out"] == "0x" + held_out_hash.hex():
            return int(task["id"])
    raise CliError("the transaction succeeded but the node lists no such task; see `wallet.py watch`")


# --- task cancel, task download, claim -----------------------------------------------------------


def cmd_task_cancel(args: argparse.Namespace, store: WalletStore) -> int:
    session = Session(args, store)
    sender, chain = store.load(args.sender), session.chain
    task = require_task(session.client, args.task_id)
    if not task.active:
        raise CliError(f"task {task.id} is already {task.status}")
    if task.creator != sender.public:
        raise CliError(f"only the creator of task {task.id} ({chain.address(task.creator)}) can cancel it, not "
                       f"{sender.name} ({chain.address(sender.public)})")
    summary = (f"cancel task {task.id} in round {task.round}: its remaining pool "
               f"{chain.format_balance(task.remaining_pool)} goes back to {sender.name}")
    return submit(session, sender, training.cancel_task(task.id), summary, spends=0)


def cmd_task_download(args: argparse.Namespace, store: WalletStore) -> int:
    from scripts._tasks import download_model, save_model_file, unhex

    session = Session(args, store)
    client = session.client
    task = require_task(client, args.task_id)
    if args.round is None:
        model_hash, which = task.model, f"the current model of task {task.id} ({task.status}, round {task.round})"
    else:
        summary = next((r for r in client.call("training_rounds", task.id) if r["round"] == args.round), None)
        if summary is None:
            closed = f"rounds 0..{task.round - 1} have" if task.round else "none has yet"
            raise CliError(f"round {args.round} of task {task.id} has not closed ({closed})")
        model_hash = unhex(summary["model"])
        which = f"the model of task {task.id} after round {args.round} ({'new' if summary['adopted'] else 'kept'})"
    weights = download_model(client, task.spec, model_hash)
    if not args.output.parent.is_dir():
        raise CliError(f"--output: no such directory: {args.output.parent}")
    try:
        save_model_file(args.output, weights)
    except (OSError, RuntimeError) as exc:
        raise CliError(f"cannot write {args.output}: {exc}") from None
    spec = task.spec
    print(f"saved {which}, 0x{model_hash.hex()}, to {args.output}")
    print(f"spec: {spec.architecture} params {','.join(map(str, spec.params))}")
    print("load it with:\n"
          f"    spec = consensus.useful_work.ModelSpec.from_params({spec.architecture!r}, {spec.params})\n"
          f"    model = consensus.useful_work.build_model(spec, 0)\n"
          f"    model.load_state_dict(torch.load({str(args.output)!r}, weights_only=True))")
    return 0


def cmd_claim(args: argparse.Namespace, store: WalletStore) -> int:
    session = Session(args, store)
    claimant = store.load(args.sender)
    accrued = get_accrued(session.client, claimant.public)
    if accrued == 0:
        raise CliError(f"{claimant.name} has no rewards to claim: rewards accrue when a round adopts a model that "
                       f"its update improved (or, for a validator, that it verified)")
    summary = f"claim {session.chain.format_balance(accrued)} of rewards accrued to {claimant.name}"
    return submit(session, claimant, training.claim_rewards(), summary, spends=0)


def get_accrued(client: Client, account: bytes) -> int:
    """The rewards an account can claim, read from state: no RPC method serves them."""
    raw = client.call("state_getStorage", "0x" + training.Accrued.key_of(account).hex())
    return 0 if raw is None else training.Accrued.decode_value(bytes.fromhex(raw[2:]))
