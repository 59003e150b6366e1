"""The wallet CLI run in-process against a node, and the check every script's error must pass: one line,
exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

from runtime import crypto
from scripts import wallet

PASSPHRASE = "correct horse battery staple"
GRAD = 10**12


def address(public: bytes) -> str:
    return crypto.encode_address(public, 42)


class WalletCli:
    """Runs `wallet.main` in-process against the node at `url`, returning (exit code, stdout, stderr)."""

    def __init__(self, url: str, directory: Path, passphrase_file: Path) -> None:
        self.url, self.directory, self.passphrase_file = url, directory, passphrase_file

    def __call__(self, capsys, *argv: str, passphrase_file: Path | None = None) -> tuple[int, str, str]:
        code = wallet.main(["--url", self.url, "--wallet-dir", str(self.directory),
                            "--passphrase-file", str(passphrase_file or self.passphrase_file), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    def import_keys(self, uris: dict[str, str]) -> None:
        """Wallets `name` for each secret URI (offline: no node needed)."""
        for name, uri in uris.items():
            assert wallet.main(["--wallet-dir", str(self.directory), "--passphrase-file", str(self.passphrase_file),
                                "import", name, "--uri", uri]) == 0, name


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
