"""Which chain a command runs on, where its files live, and opening its database.

Base path layout (as Substrate's):  <base>/chains/<chain id>/db        the LevelDB
                                    <base>/chains/<chain id>/keystore  validator keys
                                    <base>/chains/<chain id>/network   the node key (secret_ed25519)
`--dev` without `--base-path` uses a fresh temporary directory, removed at exit.

The dev chain is the repository's genesis.json with one validator (Alice), a
1-second slot and its own chain id, so a `--dev` node authors every slot.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from runtime import crypto
from runtime.errors import GradchainError
from runtime.genesis import GenesisConfig, build_genesis_state, load_genesis, parse_genesis
from storage.chainstore import ChainStore

DEFAULT_CHAIN = Path(__file__).resolve().parent.parent / "genesis.json"
DEV_SLOT_DURATION_MS = 1000
DEV_CHAIN_ID = "gradchain_dev"


def dev_spec(base_spec: dict) -> dict:
    """The --dev chain: the given spec with Alice as the only validator and a 1 s slot."""
    spec = copy.deepcopy(base_spec)
    alice = crypto.encode_address(crypto.dev_keypair("Alice").public, spec["ss58_prefix"])
    stake = next((v["stake"] for v in spec["validators"]), spec["parameters"]["min_validator_stake"])
    spec.update(name="Development", id=DEV_CHAIN_ID, slot_duration_ms=DEV_SLOT_DURATION_MS,
                validators=[{"name": "Alice", "account": alice, "stake": stake}])
    spec["parameters"] = dict(spec["parameters"], minimum_period_ms=DEV_SLOT_DURATION_MS // 2)
    return spec


def load_chain_spec(chain: Path | None, *, dev: bool) -> GenesisConfig:
    """`--chain PATH` as given; `--dev` alone is the dev chain derived from the default spec."""
    if chain is not None:
        return load_genesis(chain)
    if dev:
        base = load_genesis(DEFAULT_CHAIN)
        return parse_genesis(dev_spec(base.spec), "dev chain spec")
    return load_genesis(DEFAULT_CHAIN)


def spec_json(config: GenesisConfig) -> str:
    return json.dumps(config.spec, indent=2) + "\n"


@dataclass(frozen=True)
class ChainPaths:
    base: Path
    chain_id: str

    @property
    def chain_dir(self) -> Path:
        return self.base / "chains" / self.chain_id

    @property
    def database(self) -> Path:
        return self.chain_dir / "db"

    @property
    def keystore(self) -> Path:
        return self.chain_dir / "keystore"

    @property
    def network(self) -> Path:
        return self.chain_dir / "network"


class ChainChoiceError(GradchainError):
    """The flags select a chain other than the one the base path holds."""

    code = "chain_choice"


# --- which chain a base path holds ------------------------------------------------------
# A base path can hold several chains (chains/<id>/db). A node or command run without the flag
# that selects the chain the operator meant (--dev, --chain) opens another one: every message
# names the chain it opened and the chains that do exist there.


def chains_under(base: Path) -> list[str]:
    """Ids of the chains that have a database under a base path."""
    root = Path(base) / "chains"
    return sorted(p.name for p in root.iterdir() if (p / "db").is_dir()) if root.is_dir() else []


def chain_selector(chain_id: str) -> str:
    """The flag that selects a chain."""
    return "--dev" if chain_id == DEV_CHAIN_ID else f"--chain <its spec, id {chain_id}>"


def other_chains(paths: ChainPaths) -> str:
    others = [c for c in chains_under(paths.base) if c != paths.chain_id]
    if not others:
        return f"no other chain exists under {paths.base}"
    return f"under {paths.base} there is: " + ", ".join(f"chain {c} (select it with {chain_selector(c)})"
                                                        for c in others)


def opened(paths: ChainPaths, config: GenesisConfig) -> str:
    return f"chain {paths.chain_id} ({config.name})"


def check_not_a_silent_new_chain(paths: ChainPaths, config: GenesisConfig, *, chain_given: bool) -> None:
    """A node started with neither --dev nor --chain on a base path that holds other chains but not
    the default one would create that default chain beside them: almost always a forgotten --dev.
    Refused, naming the chain it would create, the chains that exist, and both ways on; an explicit
    --chain (or a base path with no chain yet) creates the chain as asked."""
    if chain_given or paths.database.is_dir() or not chains_under(paths.base):
        return
    raise ChainChoiceError(
        f"no --dev or --chain given: this would create a new {opened(paths, config)} under {paths.base}, "
        f"beside what is there; {other_chains(paths)}. Open that with its flag, or create the default chain "
        f"beside it with --chain {DEFAULT_CHAIN}")


def open_chain(paths: ChainPaths, config: GenesisConfig, *, pruning: int | None) -> ChainStore:
    """Open (creating if needed) the chain database; refuses another chain's or a locked one."""
    store = ChainStore.open(paths.database, pruning=pruning)
    try:
        store.initialize(build_genesis_state(config))
    except BaseException:
        store.close()
        raise
    return store
