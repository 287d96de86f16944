"""``catal``: run, resume, inspect and export active-learning campaigns.

    catal run configs/demo.yaml [--set budget.max_labels=40 ...]
    catal resume runs/demo
    catal status runs/demo
    catal validate configs/demo.yaml
    catal export runs/demo --format extxyz [-o labels.extxyz]
    catal import-mace my.model backbone.pt   (then model.backbone: {kind: mace, pretrained: backbone.pt})

Configuration errors exit with code 2 and one line naming the field; nothing is written.
A campaign that cannot go on exits 1 with one line; SIGTERM (``ray job stop``) and Ctrl-C
save the state, mark the MLflow runs KILLED and exit 143 / 130 (``catal resume`` goes on).
Unexpected errors print one line and keep the traceback in a log file (``--debug``: print
it instead).
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from rich.console import Console

from orchestrator.records.lock import CampaignBusy
from workers.errors import CampaignFailed, ConfigError, OutOfSpace
from workers.files import NO_SPACE

EXIT_CONFIG = 2
EXIT_FAILED = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``ray job stop`` and schedulers send), handled like Ctrl-C."""


def _terminator(seen: list):
    """A SIGTERM handler that notes the signal in ``seen`` and raises ``Terminated``: when it
    lands in a blocking ``ray.get`` / ``ray.wait``, Ray re-raises it as a plain
    KeyboardInterrupt, so ``seen`` is what tells SIGTERM from Ctrl-C."""

    def handler(signum, frame):
        seen.append(signum)
        # said at once: `ray job stop` sends SIGKILL a few seconds after SIGTERM
        print("\nterminated (SIGTERM): stopping; every label stored so far is kept", flush=True)
        raise Terminated()

    return handler


def _fail(message: str) -> int:
    for line in message.splitlines() or [""]:  # one line per problem
        print(f"catal: error: {line}", file=sys.stderr)
    return EXIT_CONFIG


# MLflow 3's UI opens in its GenAI mode unless told otherwise; catal's runs are model training
UI_PAGE = "#/experiments?workflowType=machine_learning"


def _mlflow_hint(cfg) -> str:
    uri = cfg.tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{UI_PAGE}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000, then http://127.0.0.1:5000/{UI_PAGE}"


def cmd_validate(args) -> int:
    from orchestrator.config import load_config

    cfg = load_config(args.config, args.set)
    b = cfg.budget
    names = [e.label for e in cfg.system.entries()]
    print(
        f"ok: {cfg.name} -> {cfg.output_dir} | {', '.join(names)} | {cfg.dft.level} | "
        f"{cfg.model.backbone.kind} + {cfg.model.head} head | "
        f"{b.max_labels} labels ({cfg.system.initial_labels} initial, {b.holdout_labels} hold-out, "
        f"<= {b.max_labels_per_round}/round) | {cfg.stop.max_rounds} rounds max"
        + (f" | async, retrain every {cfg.campaign.retrain_every} labels" if cfg.campaign.mode == "async" else "")
    )
    return 0


def _run(cfg, resume: bool) -> int:
    from orchestrator.campaign import Campaign

    console = Console(highlight=False)
    sigterm: list = []
    previous = signal.signal(signal.SIGTERM, _terminator(sigterm))
    try:
        state = Campaign(cfg).run(resume=resume)
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated) or bool(sigterm)
        why = "stopped" if terminated else "\ninterrupted"
        console.print(f"{why}; state saved, labels kept; continue with: catal resume {cfg.output_dir}", soft_wrap=True)
        return 143 if terminated else 130
    except OutOfSpace as err:
        print(f"catal: campaign failed: {_space_line(err, cfg.output_dir)}", file=sys.stderr)
        return EXIT_FAILED
    except CampaignFailed as err:
        print(f"catal: campaign failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        space = OutOfSpace(err.filename or cfg.output_dir)
        print(f"catal: campaign failed: {_space_line(space, cfg.output_dir)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = cfg.output_dir
    labels = "labels.db" if cfg.store.url is None else f"labels on {cfg.store.url.split('@')[-1]}"
    console.print(f"results in {out}: {labels}, model.pt, checkpoints/, learning_curve.png")
    console.print(f"stopped because: {state.stop_reason}")
    console.print(f"open the MLflow UI: {_mlflow_hint(cfg)}", soft_wrap=True)
    return 0


def _space_line(err: OutOfSpace, out_dir: Path) -> str:
    """The full disk in one line: the file, what it needed, what is free, how to go on."""
    import shutil

    where = Path(err.path).parent if Path(err.path).parent.exists() else out_dir
    free = shutil.disk_usage(where).free
    used = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file()) if out_dir.is_dir() else 0
    return (
        f"{err} ({free / 1e6:.1f} MB free there; the campaign has written {used / 1e6:.1f} MB so far). "
        f"Every stored label is kept: free some space (or copy {out_dir} to a disk with room) and run "
        f"catal resume on it"
    )


def cmd_run(args) -> int:
    from orchestrator.config import load_config
    from orchestrator.records.rundir import RunDir

    cfg = load_config(args.config, args.set)
    out = cfg.output_dir
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir: {out} exists and is not a directory")
    if RunDir(out).has_state():
        raise ConfigError(f"{out} already holds a campaign; continue it with: catal resume {out}")
    return _run(cfg, resume=False)


def _load_out_dir(out_dir: str):
    from orchestrator.config import load_campaign_config
    from orchestrator.records.rundir import RunDir

    run = RunDir(Path(out_dir))
    if not run.config.is_file() or not run.has_state():
        raise ConfigError(f"{run.root} is not a catal campaign directory (no config.yaml / state.json)")
    return load_campaign_config(run.config, run.root)


def cmd_resume(args) -> int:
    return _run(_load_out_dir(args.out_dir), resume=True)


def cmd_status(args) -> int:
    from orchestrator.outputs.status import TABLE_NOTE, round_table
    from orchestrator.records.state import load_state

    # a terminal gets its own width; a pipe or a file 120 columns, so the table is not truncated
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    cfg = _load_out_dir(args.out_dir)
    state = load_state(cfg.output_dir, console.print)
    store = cfg.label_store()
    rows = store.labels()
    console.print(round_table(cfg.name, cfg.output_dir, state, rows))
    console.print(TABLE_NOTE, soft_wrap=True)
    where = "finished" if state.finished else f"round {state.round}, phase {state.phase}"
    console.print(f"{where}; {sum(s.charged for s in rows)}/{cfg.budget.max_labels} labels charged")
    if state.stop_reason:
        console.print(f"stop reason: {state.stop_reason}")
    console.print(f"MLflow UI: {_mlflow_hint(cfg)}", soft_wrap=True)
    return 0


def cmd_export(args) -> int:
    cfg = _load_out_dir(args.out_dir)
    from orchestrator.records.rundir import RunDir

    dest = Path(args.output or RunDir(cfg.output_dir).labels_extxyz)
    n = cfg.label_store().export_extxyz(dest)
    print(f"wrote {n} labelled structures to {dest}")
    return 0


def cmd_import_mace(args) -> int:
    from workers.model.mace_backbone import import_model

    src, dest = Path(args.model), Path(args.output)
    if not src.is_file():
        raise ConfigError(f"MACE model file not found: {src}")
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest} exists; pass --force to overwrite it")
    try:
        s = import_model(src, dest)
    except (ValueError, ImportError, pickle.UnpicklingError, EOFError) as err:
        raise ConfigError(f"{src}: {err}") from None
    print(
        f"wrote {dest}: MACE backbone of {s['source']} ({s['layers']} layers, {s['features']} invariant "
        f"features/atom, r_max {s['cutoff_a']} Å, Z={s['elements']}); use it with "
        f"--set model.backbone.kind=mace --set model.backbone.pretrained={dest}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="catal", description="Categorical active learning for MLIPs.")
    p.add_argument("--debug", action="store_true", help="print tracebacks instead of one line + a log file")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("run", cmd_run, "start a campaign from a YAML config"),
        ("validate", cmd_validate, "check a config without running anything"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("config")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
        sp.set_defaults(fn=fn)
    for name, fn, help_ in (
        ("resume", cmd_resume, "continue an interrupted campaign"),
        ("status", cmd_status, "table of rounds (labels from the store, metrics from state.json: no server needed)"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("out_dir")
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("export", help="write the labelled structures to a file")
    sp.add_argument("out_dir")
    sp.add_argument("--format", choices=["extxyz"], default="extxyz")
    sp.add_argument("-o", "--output", default=None)
    sp.set_defaults(fn=cmd_export)
    sp = sub.add_parser(
        "import-mace",
        help="convert a mace-torch model file (trained or foundation) into a backbone to fine-tune; "
        "it unpickles the file, so only import models you trust",
    )
    sp.add_argument("model", help="a .model file saved by mace-torch (e.g. mace_run_train's NAME.model)")
    sp.add_argument("output", help="the backbone file to write (loads with weights_only=True)")
    sp.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    sp.set_defaults(fn=cmd_import_mace)
    return p


def _log_traceback(args) -> Path:
    """The current exception's traceback, in the campaign's directory when there is one."""
    out = Path(getattr(args, "out_dir", "") or "")
    where = out if out.name and out.is_dir() else Path(tempfile.gettempdir())
    path = where / f"catal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(traceback.format_exc())
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as err:
        if args.debug:
            raise
        return _fail(str(err))
    except CampaignBusy as err:
        return _fail(str(err))
    except CampaignFailed as err:  # e.g. `catal status` with its label store's server away
        print(f"catal: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # noqa: BLE001 - the unexpected: one line here, the traceback in a file
        if args.debug:
            raise
        log = _log_traceback(args)
        cause = str(err).splitlines()[0] if str(err) else ""
        print(f"catal: error: {type(err).__name__}: {cause} (traceback: {log}; --debug prints it)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
