"""Session fixtures shared by several test folders.

``slurm``: a private single-node Slurm for the cluster tests, started once per session when it can be.

Where Slurm and munge are not installed (``apt-get install slurm-wlm munge``; ``.ci/run`` installs
them) or the daemons cannot start, the tests are skipped with the reason.
"""

import pytest

from tests.cluster.slurm_cluster import SlurmCluster, why_not


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, OSError) as exc:
        cluster.stop()
        pytest.skip(f"the Slurm daemons could not start here: {exc}")
    yield cluster
    cluster.stop()
