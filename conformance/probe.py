"""``python -m park.conformance.probe``: small programs the checks submit as Ray jobs.

They run inside the target the way a workload does (as a Ray job, on Ray workers, under the Ray service
account's identity on clusters), so what they prove holds for the workloads too. Each prints one JSON line
starting with ``PROBE-RESULT`` for the check to read; the check then verifies the effect on its own.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys

import typer
from park.workloads import storage

RESULT_PREFIX = "PROBE-RESULT "

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


@app.callback()
def _probes() -> None:
    """Keeps sub-command names (typer turns a lone command into the root command otherwise)."""


@app.command("storage-roundtrip")
def storage_roundtrip(
    uri: str = typer.Option(..., help="Object to write: a storage URI (file://, s3://, gs://)."),
    nonce: str = typer.Option(..., help="Text to write; the check compares it on read-back."),
) -> None:
    """A Ray task writes ``nonce`` to ``uri`` and reads it back; prints where it ran and the SHA-256."""
    import ray

    @ray.remote(num_cpus=0.1)
    def write_and_read(uri: str, text: str) -> dict:
        return _roundtrip(uri, text)

    ray.init()
    try:
        outcome = ray.get(write_and_read.remote(uri, nonce))
    finally:
        ray.shutdown()
    print(RESULT_PREFIX + json.dumps(outcome), flush=True)
    if not outcome["same"]:
        sys.exit(1)


@app.command("storage-direct")
def storage_direct(
    uri: str = typer.Option(..., help="Object to write: a storage URI (file://, s3://, gs://)."),
    nonce: str = typer.Option(..., help="Text to write; read back and compared."),
) -> None:
    """Write ``nonce`` to ``uri`` with this pod's identity and read it back (no Ray: a plain pod)."""
    outcome = _roundtrip(uri, nonce)
    print(RESULT_PREFIX + json.dumps(outcome), flush=True)
    if not outcome["same"]:
        sys.exit(1)


def _roundtrip(uri: str, text: str) -> dict:
    storage.write_text(uri, text)
    back = storage.read_text(uri)
    return {
        "host": socket.gethostname(),
        "sha256": hashlib.sha256(back.encode()).hexdigest(),
        "bytes": len(back.encode()),
        "same": back == text,
    }


def parse_result(logs: str) -> dict | None:
    """The probe's JSON result from a job's logs, or None when it printed none."""
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line.removeprefix(RESULT_PREFIX))
    return None


if __name__ == "__main__":
    app(prog_name="python -m park.conformance.probe")
