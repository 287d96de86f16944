"""Uncertainty quality on held-out DFT data: the categorical head's one-model signals vs a committee.

    python benchmarks/uncertainty.py [--epochs 1000] [--members 4] [--data ...] [--quick]

The same run as ``benchmarks/heads.py --variants scalar,categorical --seeds MEMBERS``: each
seed trains one categorical and one scalar model with the same budget; the scalar models
form the committee (DP-GEN max_devi_f, ``members`` trainings), each categorical model gives
its histogram std and entropy (one training). Printed: Spearman of each signal against the
per-structure force MAE, AUROC for flagging the worst 10%, and a calibration table
(predicted energy std by quantile bin against the observed errors), beside the accuracy
and histogram-sharpness tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heads  # noqa: E402  (the benchmark next to this one)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(heads.REFERENCE if heads.REFERENCE.exists() else heads.FALLBACK))
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--members", type=int, default=4, help="committee size = seeds of each head")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="few epochs, small model: a smoke run for tests")
    args = p.parse_args()
    argv = ["--variants", "scalar,categorical", "--data", args.data, "--epochs", str(args.epochs)]
    argv += ["--seeds", str(args.members), "--jobs", str(args.jobs)] + (["--quick"] if args.quick else [])
    heads.main(argv)


if __name__ == "__main__":
    main()
