"""grandpa_*: the finality gadget's rounds and proofs, shaped like Substrate's."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import RpcError
from rpc.server import CallContext, Method, RpcServer

NO_FINALITY = -32000  # Substrate answers grandpa_roundState on a node without GRANDPA with a server error


def register(server: RpcServer, node) -> None:
    async def grandpa_roundState(ctx: CallContext):
        """{setId, best: {round, totalWeight, thresholdWeight, prevotes, precommits}, background: [...]}"""
        state = await node.round_state()
        if state is None:
            raise RpcError(NO_FINALITY, "this node runs no finality voter")

        def stage(votes):
            return {"currentWeight": votes["currentWeight"], "missing": [node.address(w) for w in votes["missing"]]}

        def round_json(r):
            return dict(r, prevotes=stage(r["prevotes"]), precommits=stage(r["precommits"]))
        return {"setId": state["setId"], "best": round_json(state["best"]),
                "background": [round_json(r) for r in state["background"]]}

    async def grandpa_proveFinality(ctx: CallContext, blockNumber=None):
        """The encoded finality proof of the canonical block at `blockNumber` (hex), or null."""
        number = p.block_number(blockNumber, "blockNumber")
        if number is None:
            raise p.invalid_params("blockNumber is required")
        proof = await node.prove_finality(number)
        return None if proof is None else p.to_hex(proof)

    async def grandpa_justifiedBy(ctx: CallContext, blockNumber=None):
        """Who finalized the canonical block at `blockNumber`, from the first justification at or above it:
        {block, justified: {hash, number}, setId, round, signers: [address], signedWeight, totalWeight, voters}
        (weights as decimal strings: stakes pass 2^53), or null while it is not final."""
        number = p.block_number(blockNumber, "blockNumber")
        if number is None:
            raise p.invalid_params("blockNumber is required")
        found = await node.justified_by(number)
        if found is None:
            return None
        return dict(found, justified={"hash": p.to_hex(found["justified"]["hash"]),
                                      "number": found["justified"]["number"]},
                    signers=[node.address(who) for who in found["signers"]],
                    signedWeight=str(found["signedWeight"]), totalWeight=str(found["totalWeight"]))

    for handler in (grandpa_roundState, grandpa_proveFinality, grandpa_justifiedBy):
        server.register(Method(handler.__name__, handler))
