import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with 2 CPUs (shut down at the end of the session)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
