"""The model replica: Ray Serve LLM's ``LLMServer`` that first makes sure its model is on local disk.

Imported only inside Ray workers (it needs ``ray.serve.llm``); :mod:`park.workloads.serve.app` names it
by import path. A model in a bucket (``s3://``, ``gs://``) is copied through ``pyarrow.fs`` into a
node-local cache before the engine starts, so vLLM always loads a plain folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from pathlib import Path

from park.workloads.serve.app import MODEL_PATH_ENV, MODEL_URI_ENV, ServeArgsError, check_local_model
from ray.serve.llm import LLMServer

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".park-download-complete"


def fetch_model(uri: str, destination: str | Path) -> Path:
    """Copy the model folder at ``uri`` (any pyarrow.fs URI: s3://, gs://, file://) to ``destination``.

    Skipped when a finished copy is already there. The copy lands in a sibling temporary folder first
    and is renamed into place, so a replica killed mid-download never leaves a half model that a
    later replica would load.
    """
    from pyarrow import fs

    target = Path(destination)
    if (target / COMPLETE_MARKER).is_file():
        return target
    filesystem, path = fs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(path)
    if info.type != fs.FileType.Directory:
        raise ServeArgsError(f"model URI {uri!r} is not a folder (pyarrow.fs sees {info.type.name})")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        fs.copy_files(path, str(partial), source_filesystem=filesystem,
                      destination_filesystem=fs.LocalFileSystem(), use_threads=True)
        (partial / COMPLETE_MARKER).write_text(uri + "\n")
        try:
            partial.rename(target)
        except OSError:
            if not (target / COMPLETE_MARKER).is_file():  # not a concurrent finished copy: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    check_local_model(target)
    return target


class ParkLLMServer(LLMServer):
    """``LLMServer`` plus the download of a bucket model before the engine starts."""

    async def __init__(self, llm_config, **kwargs):
        uri = os.environ.get(MODEL_URI_ENV)
        if uri:
            destination = os.environ[MODEL_PATH_ENV]
            log.info("downloading model %s to %s", uri, destination)
            await asyncio.to_thread(fetch_model, uri, destination)
        else:
            source = llm_config.model_loading_config.model_source
            if isinstance(source, str) and source.startswith("/"):
                check_local_model(source)  # also on this node, not only where the app was built
        await super().__init__(llm_config, **kwargs)
