"""Entry script for `ray submit CLUSTER.yaml deploy/submit_campaign.py REPO CONFIG [--set k=v ...]`.

`ray submit` copies this file to the head node and runs it there with the head's python; it
runs `catal run CONFIG` from the repository, joined to the cluster (``ray.address=auto``).
Relative ``out_dir`` values resolve against REPO. The exit code is catal's.
"""

import os
import sys

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: submit_campaign.py REPO CONFIG [--set key=value ...]")
    repo, config, *extra = sys.argv[1:]
    os.chdir(repo)
    sys.path.insert(0, repo)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from orchestrator.cli import main

    sys.exit(main(["run", config, "--set", "ray.address=auto", *extra]))
