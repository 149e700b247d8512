"""A local Ray for one test module: its files under a folder of the test's own, the environment Ray needs here
(auth off, no usage stats, no model hub) set for its lifetime and restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

RAY_TEST_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}


@contextmanager
def local_ray(temp_dir: Path | str, num_cpus: int = 2) -> Iterator[str]:
    """Start a local Ray (no dashboard) and yield its GCS address; shut it down on exit."""
    import ray

    with pytest.MonkeyPatch.context() as env:
        for key, value in RAY_TEST_ENV.items():
            env.setenv(key, value)
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()
