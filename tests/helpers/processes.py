"""Subprocesses under deadlines: a line reader that never blocks past its deadline, and `gradchain`
as an operator runs it, on free ports, whose log tail goes into every failure message."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
GRADCHAIN = [sys.executable, "-m", "node.cli"]


class LineReader:
    """Reads a stream on a daemon thread, so a test waits for a line with a deadline, never forever
    (`readline()` on a pipe blocks as long as the child lives and stays silent)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []  # every line read so far, for failure messages
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        except (OSError, ValueError) as exc:  # closed under us, or undecodable: the end, said why
            self._queue.put(f"(output unreadable: {exc!r})\n")
        finally:
            self._queue.put(None)  # end of stream

    def readline(self, timeout: float) -> str | None:
        """The next line (without its newline), None at the end of the stream; TimeoutError past the deadline."""
        try:
            line = self._queue.get(timeout=max(timeout, 0))
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout:.0f} s") from None
        if line is None:
            self._queue.put(None)  # the end stays the end for later calls
            return None
        line = line.rstrip("\n")
        self.lines.append(line)
        return line

    def read_until(self, text: str, timeout: float = 60) -> list[str]:
        """Lines up to and including the first one containing `text`."""
        start, deadline = len(self.lines), time.monotonic() + timeout
        while True:
            try:
                line = self.readline(deadline - time.monotonic())
            except TimeoutError:
                raise AssertionError(f"no {text!r} within {timeout} s; output: {self.tail()}") from None
            if line is None:
                raise AssertionError(f"the process ended before {text!r}; output: {self.tail()}")
            if text in line:
                return self.lines[start:]

    def drain(self, timeout: float = 10) -> None:
        """Read what is left until the stream ends (the process has exited or been killed)."""
        deadline = time.monotonic() + timeout
        try:
            while self.readline(deadline - time.monotonic()) is not None:
                pass
        except TimeoutError:
            pass

    def tail(self, count: int = 20) -> str:
        return "\n".join(self.lines[-count:])


def gradchain(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the binary to completion (a subcommand, or a node that exits at once on bad input)."""
    return subprocess.run([*GRADCHAIN, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The one error line of a run that failed as a user error should: exit code 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [x for x in result.stderr.splitlines() if x.startswith(("Error: ", "gradchain: error: "))]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def stop_process(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal, wait, and kill if it does not stop in time: the process is gone when this returns."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"pid {process.pid} did not stop within {timeout} s of signal {signum}") from None


class NodeProcess:
    """A `gradchain --dev` subprocess with JSON logs. Every port is free (RPC, metrics and p2p on 0 unless
    a flag says otherwise), every wait has a deadline, and a failed wait shows the log's tail."""

    def __init__(self, base: Path, *extra: str) -> None:
        ports = []
        if "--no-rpc" not in extra and "--rpc-port" not in extra:
            ports += ["--rpc-port", "0"]
        if "--no-prometheus" not in extra and "--prometheus-port" not in extra:
            ports += ["--prometheus-port", "0"]
        if "--p2p-port" not in extra:
            ports += ["--p2p-port", "0"]
        self.process = subprocess.Popen(
            [*GRADCHAIN, "--dev", "--base-path", str(base), "--log-format", "json", *ports, *extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, errors="replace", cwd=ROOT)
        self.log = LineReader(self.process.stderr)
        self.records: list[dict] = []  # the JSON log records read so far
        self._parsed = 0  # how many of the log's lines went into `records`

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Stops the node if the test has not; a failing test's error gets the log tail as a note and is
        never replaced by an error of the cleanup."""
        if exc is not None:
            try:
                self.stop(signal.SIGKILL, timeout=10)
            except Exception as cleanup_error:  # the test's own failure is the one to see
                exc.add_note(f"(stopping the node also failed: {cleanup_error!r})")
            exc.add_note(f"node log tail:\n{self.log.tail()}")
        elif self.process.poll() is None:
            self.stop()

    def wait_for(self, event: str, count: int = 1, timeout: float = 60) -> dict:
        """The `count`-th log record of `event` from now on."""
        deadline, seen = time.monotonic() + timeout, 0
        while True:
            try:
                line = self.log.readline(deadline - time.monotonic())
            except TimeoutError:
                raise AssertionError(f"no {count} x {event!r} within {timeout} s; log tail:\n{self.log.tail()}") \
                    from None
            if line is None:
                raise AssertionError(f"node exited ({self.process.poll()}) before {event!r}; log tail:\n"
                                     f"{self.log.tail()}")
            record = self._parse(line)
            if record is not None and record.get("event") == event:
                seen += 1
                if seen >= count:
                    return record

    def _parse(self, line: str) -> dict | None:
        self._parsed += 1
        try:
            record = json.loads(line)
        except ValueError:
            return None
        self.records.append(record)
        return record

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop the node (killing it if it does not stop in time) and read the rest of its log; returns
        its exit code."""
        try:
            return stop_process(self.process, signum, timeout)
        finally:
            self.log.drain()
            for line in self.log.lines[self._parsed:]:
                self._parse(line)

    def events(self, event: str) -> list[dict]:
        return [record for record in self.records if record.get("event") == event]


def log_records(node, event: str) -> list[dict]:
    """The JSON log records of `event` in a node process's log (lines that are not JSON are skipped)."""
    found = []
    for line in node.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found
