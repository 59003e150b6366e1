"""The one exception root of gradchain.

Every error a user can meet derives from `GradchainError` and carries a stable
`code` (a short snake_case string) and a message that says what to do. The
runtime is the bottom layer, so every other package can import this module.
"""

from __future__ import annotations


class GradchainError(Exception):
    """Root of every gradchain error."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class CodecError(GradchainError):
    """Bytes that are not the canonical encoding of the expected type."""

    code = "codec"


class InvalidBlock(GradchainError):
    """A block that must not be imported; the message names what did not match."""

    code = "invalid_block"


class GenesisError(GradchainError):
    """A genesis (chain spec) file that cannot be used; the message names the field."""

    code = "genesis"


class CliError(GradchainError):
    """An error the user of a command-line tool can fix (a flag, a file, a key): one line, exit code 2."""

    code = "cli"
