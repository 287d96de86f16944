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


@pytest.fixture(scope="session")
def tiny_references(tmp_path_factory):
    """The tiny campaign's seed minimum + Hessian (RHF/STO-3G ethanol), computed once: campaigns
    testing something else start from a copy (``install_references``), as a resumed one does."""
    from orchestrator.config import load_config
    from orchestrator.references import compute_references
    from tests.integration.helpers import TINY

    return compute_references(load_config(TINY), tmp_path_factory.mktemp("references"))
