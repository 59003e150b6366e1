"""`gradchain`: the validator binary, with Substrate's flags and subcommands.

Every error a user can cause (a bad flag, a bad chain spec, another chain's or a
locked database, a bad key file) is one line on stderr and exit code 2; never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.errors import GradchainError

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def pruning(text: str) -> int | None:
    if text == "archive":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is neither a number of blocks (>= 1) nor 'archive'")


def positive(text: str) -> int:
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")


def add_chain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dev", action="store_true",
                        help="the development chain: Alice validates alone, 1 s slots, temporary base path")
    parser.add_argument("--chain", type=Path, metavar="PATH", help="chain spec file (default: genesis.json)")
    parser.add_argument("--base-path", type=Path, metavar="PATH",
                        help="where the node keeps its data (default with --dev: a temporary directory)")
    parser.add_argument("--pruning", type=pruning, default=256, metavar="N|archive",
                        help="keep the states of the last N finalized blocks, or all of them (default 256)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.add_argument("--log-format", choices=("console", "json"), default="console",
                        help="key=value lines for a terminal, or one JSON object per line")


def build_parser() -> Parser:
    parser = Parser(prog="gradchain", description="A blockchain node that pays for useful machine-learning work.")
    add_chain_options(parser)
    parser.add_argument("--validator", action="store_true", help="author blocks with the key of --key-file")
    parser.add_argument("--key-file", type=Path, metavar="PATH", help="validator key file (0600; see 'key generate')")
    parser.add_argument("--name", default="gradchain-node", help="a human-readable node name")
    parser.add_argument("--rpc-port", type=port, default=9944, help="JSON-RPC port, HTTP and WebSocket (default 9944)")
    parser.add_argument("--rpc-external", action="store_true",
                        help="listen on all interfaces, not only 127.0.0.1 (unsafe methods stay loopback-only)")
    parser.add_argument("--rpc-methods", choices=("auto", "safe", "unsafe"), default="auto",
                        help="'unsafe' lets remote clients call unsafe methods; 'auto' and 'safe' do not")
    parser.add_argument("--rpc-cors", default="", metavar="ORIGINS",
                        help="comma-separated origins allowed by browsers, or 'all'")
    parser.add_argument("--no-rpc", action="store_true", help="do not serve JSON-RPC")
    parser.add_argument("--p2p-port", type=port, metavar="PORT",
                        help="peer-to-peer port (default 30333; with --dev any free port; 0: any free port)")
    parser.add_argument("--p2p-host", default="0.0.0.0", metavar="IPV4",
                        help="interface the peer-to-peer port listens on (default all: 0.0.0.0)")
    parser.add_argument("--bootnodes", nargs="+", action="extend", default=[], metavar="MULTIADDR",
                        help="peers to connect to at start, as /ip4/A/tcp/P/p2p/PEERID")
    parser.add_argument("--reserved-nodes", nargs="+", action="extend", default=[], metavar="MULTIADDR",
                        help="peers to stay connected to (redialled at once when they drop)")
    parser.add_argument("--reserved-only", action="store_true", help="connect to reserved nodes only")
    parser.add_argument("--node-key-file", type=Path, metavar="PATH",
                        help="the libp2p node key (default <base>/chains/<id>/network/secret_ed25519, made at "
                             "first start; see 'key generate-node-key')")
    parser.add_argument("--no-network", action="store_true", help="run without peer-to-peer networking")
    parser.add_argument("--prometheus-port", type=port, default=9615,
                        help="Prometheus metrics port on 127.0.0.1 (default 9615; 0 picks a free one)")
    parser.add_argument("--no-prometheus", action="store_true", help="do not serve metrics")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    key = commands.add_parser("key", help="generate or inspect keys")
    key_commands = key.add_subparsers(dest="key_command", metavar="generate|inspect|generate-node-key",
                                      required=True, parser_class=Parser)
    generate = key_commands.add_parser("generate", help="a new mnemonic, its public key and address")
    generate.add_argument("--words", type=int, choices=(12, 15, 18, 21, 24), default=12)
    generate.add_argument("--output-file", type=Path, metavar="PATH", help="also write a validator key file (0600)")
    generate.add_argument("--ss58-prefix", type=int, default=42)
    inspect = key_commands.add_parser(
        "inspect", help="public key and address of a key",
        description="The key comes from --wallet, --key-file or $GRADCHAIN_SECRET_URI (else a prompt on a "
                    "terminal); a URI argument only for dev accounts: the command line is visible in `ps`.")
    inspect.add_argument("uri", nargs="?", metavar="URI", help='a dev account only, like "//Alice"')
    from rpc.key_sources import add_key_options

    add_key_options(inspect, uri_option=False)
    inspect.add_argument("--ss58-prefix", type=int, default=42)

    node_key = key_commands.add_parser("generate-node-key", help="a new libp2p node key; prints its peer id")
    node_key.add_argument("--file", type=Path, required=True, metavar="PATH", help="where to write it (0600)")

    build_spec = commands.add_parser("build-spec", help="print the chain spec as JSON")
    add_chain_options(build_spec)

    purge = commands.add_parser("purge-chain", help="delete the chain database under --base-path")
    add_chain_options(purge)
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    export = commands.add_parser("export-blocks", help="write canonical blocks to a file")
    add_chain_options(export)
    export.add_argument("--from", dest="first", type=int, default=1, metavar="N", help="first block (default 1)")
    export.add_argument("--to", dest="last", type=int, metavar="N", help="last block (default: best)")
    export.add_argument("file", type=Path, help="output file")

    import_ = commands.add_parser("import-blocks", help="import blocks from a file written by export-blocks")
    add_chain_options(import_)
    import_.add_argument("--key-file", type=Path, metavar="PATH",
                         help="validator key file: re-measure the blocks' useful work for the tasks sealed to it "
                              "(--dev: Alice's key)")
    import_.add_argument("file", type=Path, help="input file")

    check = commands.add_parser("check-block", help="re-execute a stored block and check it")
    add_chain_options(check)
    check.add_argument("block", help="block number or 0x hash")

    from node.testnet.command import add_parser as add_testnet_parser

    add_testnet_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from node import logs

    logs.configure(args.log_level, args.log_format)
    try:
        if args.command is None:
            from node.run import leave_without_teardown, run_node

            leave_without_teardown(run_node(args))  # stopped cleanly: nothing left for the teardown to do
        from node import commands

        return commands.run(args)
    except GradchainError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
