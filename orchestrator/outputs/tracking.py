"""MLflow tracking (the only module importing mlflow): one parent run per campaign, one nested
child run per round, metrics in batches, plots and picked structures as artifacts.

Tracking is an observer: every write is put in the campaign's durable outbox
(``outputs.outbox``) and sent from there, in order, when the server answers. An unreachable
server costs one warning line (and one when it is back), never the campaign or a record;
what is still queued when the campaign ends is sent by ``catal resume``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import requests
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from orchestrator.outputs.outbox import Outbox, child_handle, new_handle
from workers.errors import DamagedFile, OutOfSpace, first_line
from workers.model.checkpoint import load_checkpoint

PARAM_BATCH = 100  # MLflow's per-request limit on params
# MLflow 3's UI opens an experiment by its kind: without this tag it may offer the GenAI
# (traces) view; catal's runs are model training, shown on the runs table with metric charts
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
RETRY_S = (20.0, 300.0)  # while the server is away, try again after 20 s, doubling up to 5 min
# the server's answers that mean "not now" (down, restarting, its database busy) or "not like
# this" that a user fixes on the server side (credentials, the URL): keep the record
TRANSIENT = {
    "INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED",
    "PERMISSION_DENIED", "UNAUTHENTICATED", "ENDPOINT_NOT_FOUND",
}  # fmt: skip
REFUSALS_SHOWN = 3  # lines for records the server refused outright (then only counted)
# an away server costs seconds, not MLflow's minutes of back-off (the outbox keeps the record)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
# keep the console for catal's own progress: MLflow's table-creation INFO and pickle notes are
# noise, and a database error it has already turned into an exception is not a traceback to print
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def transient(err: Exception) -> bool:
    """Whether a failed write may succeed later (server away, busy, its disk full)."""
    if isinstance(err, MlflowException):
        return err.error_code in TRANSIENT
    if isinstance(err, FileNotFoundError):  # an artifact deleted since: it never will be there
        return False
    return isinstance(err, (requests.RequestException, OSError))


class Tracker:
    """Campaign and round runs by handle (``start_campaign`` / ``start_round`` return one);
    ``outbox``: the durable queue's file (None: in memory, for a read-only look)."""

    def __init__(self, uri: str, experiment: str, artifact_dir: Path | None = None,
                 outbox: Path | None = None, warn: Callable[[str], None] = _stderr):  # fmt: skip
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.outbox = Outbox(outbox)
        self.writer = Writer(self.client, uri, experiment, artifact_dir, self.outbox)
        self.warn = warn
        if self.outbox.damaged:
            warn(self.outbox.damaged)
        self.away_since: float | None = None  # when the server stopped answering
        self.tried_at = 0.0  # when the last try while away ended
        self.retry_s = RETRY_S[0]
        self.refused = 0
        self.opened: list[str] = []  # runs this session started or reopened and has not ended
        carried = self.queued  # what an earlier session could not send
        if carried and self.flush():
            self.warn(f"MLflow tracking at {uri} took the {carried} records an earlier session had queued")

    # ---- the campaign's writes: queued, then sent -------------------------------------
    def start_campaign(self, name: str, params: dict, run_id: str | None = None) -> str:
        """The parent run's handle (reopened on resume); the flattened config as its params."""
        if run_id is not None:
            self.opened.append(run_id)
            self._put("update_run", run=run_id, status="RUNNING")
            return run_id
        handle = new_handle()
        self.opened.append(handle)  # before it is sent: a signal mid-send still finds it (end_open)
        self.outbox.put("create_run", handle=handle, name=name, tags={"catal.kind": "campaign"})
        items = [[k, str(v)[:6000]] for k, v in sorted(params.items())]
        for start in range(0, len(items), PARAM_BATCH):
            self.outbox.put("log_params", run=handle, params=items[start : start + PARAM_BATCH])
        self.flush()
        return handle

    def start_round(self, parent_id: str, rnd: int, run_id: str | None = None, kind: str = "round") -> str:
        """A nested child run for round ``rnd`` (reused when resuming that round); ``kind``
        "generation": the asynchronous campaign's model ``rnd``, with a round's metrics."""
        if run_id is not None:
            self.opened.append(run_id)
            self._put("update_run", run=run_id, status="RUNNING")
            return run_id
        handle = child_handle(parent_id, kind, rnd)
        self.opened.append(handle)  # before it is sent: a signal mid-send still finds it (end_open)
        tags = {"mlflow.parentRunId": parent_id, "catal.kind": kind, "catal.round": str(rnd)}
        self._put("create_run", handle=handle, name=f"{kind}_{rnd:03d}", tags=tags)
        return handle

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        """All metrics in one request, stamped now. NaN is kept (MLflow stores it): an
        undefined value, e.g. a Spearman over one pick, stays visible."""
        now = int(time.time() * 1000)
        batch = [[k, float(v), now, step] for k, v in metrics.items() if v is not None]
        if batch:
            self._put("log_metrics", run=run_id, metrics=batch)

    def log_artifacts(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        for p in paths:
            if Path(p).exists():
                self.outbox.put("log_artifact", run=run_id, path=str(Path(p).resolve()), artifact_path=artifact_path)
        self.flush()

    def log_model(self, run_id: str, checkpoint: Path) -> None:
        """The final model: the checkpoint file and an ``mlflow.pytorch`` model made from it."""
        self._put("log_model", run=run_id, checkpoint=str(Path(checkpoint).resolve()))

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        """Close a run. A campaign stopping for a full disk (the outbox's too) still marks
        its run FAILED / KILLED straight on the server when that answers."""
        if run_id in self.opened:
            self.opened.remove(run_id)
        try:
            self._put("terminate", run=run_id, status=status)
        except OutOfSpace:
            if status == "FINISHED":
                raise
            run = self.outbox.resolve(run_id)
            if run is not None:
                with contextlib.suppress(MlflowException, requests.RequestException, OSError):
                    self.client.set_terminated(run, status=status)

    def end_open(self, status: str) -> None:
        """Close every run this session opened and has not ended (rounds before their
        campaign) with ``status``: a campaign stopped by a signal or an error, whichever run
        it was in, even one whose handle the caller had not been given back yet."""
        for run_id in reversed(list(self.opened)):
            self.end(run_id, status)

    @property
    def queued(self) -> int:
        """Records not yet taken by the server."""
        return len(self.outbox)

    def _put(self, op: str, **args) -> None:
        self.outbox.put(op, **args)
        self.flush()

    # ---- sending ------------------------------------------------------------------------
    def flush(self, now: bool = False) -> bool:
        """Send queued records in order until one cannot go; True when none is left. While
        the server is away, tried at most every ``RETRY_S`` (``now``: at once)."""
        if not now and self.away_since is not None and time.monotonic() - self.tried_at < self.retry_s:
            return False
        sent = 0
        for seq, op, args in self.outbox.pending():
            try:
                self.writer.send(op, args)
            except (MlflowException, requests.RequestException, OSError) as err:
                if transient(err):
                    self._went_away(err)
                    return False
                self.refused += 1
                if self.refused <= REFUSALS_SHOWN:
                    more = " (further refusals are not shown)" if self.refused == REFUSALS_SHOWN else ""
                    self.warn(f"MLflow refused a {op} record ({first_line(err)}); skipped{more}")
            self.outbox.done(seq)
            sent += 1
        if self.away_since is not None:
            self.warn(f"MLflow tracking at {self.uri} answers again: {sent} queued records sent")
            self.away_since, self.retry_s = None, RETRY_S[0]
        return True

    def _went_away(self, err: Exception) -> None:
        """Noted (one line the first time); the next try waits ``retry_s``, doubling."""
        if self.away_since is not None:
            self.retry_s = min(2 * self.retry_s, RETRY_S[1])
        self.tried_at = time.monotonic()  # after the try: a server that hangs costs one timeout a wait
        if self.away_since is None:
            self.away_since = time.monotonic()
            where = self.outbox.path or "memory"
            self.warn(
                f"MLflow tracking at {self.uri} unreachable ({first_line(err)}); the campaign goes on, "
                f"records wait in {where} and are sent when it answers"
            )


class Writer:
    """Tracking records sent to MLflow, one at a time: handles resolved to the server's ids
    through the outbox's names, a run created once."""

    def __init__(self, client: MlflowClient, uri: str, experiment: str, artifact_dir: Path | None, outbox: Outbox):
        self.client, self.uri, self.experiment = client, uri, experiment
        self.artifact_dir, self.outbox = artifact_dir, outbox

    def run(self, handle: str) -> str:
        """The server's run id for ``handle``: from the outbox's names, else from the run's
        ``catal.handle`` tag (an outbox lost after the run was created)."""
        run_id = self.outbox.resolve(handle)
        if run_id is None:
            found = self.client.search_runs([self.experiment_id()], filter_string=f"tags.`catal.handle` = '{handle}'")
            if not found:  # its create_run record was skipped: nothing can be logged to it
                raise MlflowException(f"run {handle} was never created", error_code=RESOURCE_DOES_NOT_EXIST)
            run_id = found[0].info.run_id
            self.outbox.name(handle, run_id)
        return run_id

    def send(self, op: str, args: dict) -> None:
        c = self.client
        if op == "create_run":
            self.outbox.name(args["handle"], self._create_run(args))
        elif op == "log_params":
            c.log_batch(self.run(args["run"]), params=[Param(k, v) for k, v in args["params"]])
        elif op == "log_metrics":
            c.log_batch(self.run(args["run"]), metrics=[Metric(*m) for m in args["metrics"]])
        elif op == "log_artifact":
            c.log_artifact(self.run(args["run"]), args["path"], args["artifact_path"])
        elif op == "log_model":
            self._log_model(self.run(args["run"]), Path(args["checkpoint"]))
        elif op == "update_run":
            c.update_run(self.run(args["run"]), status=args["status"])
        elif op == "terminate":
            c.set_terminated(self.run(args["run"]), status=args["status"])
        else:
            raise ValueError(f"unknown tracking record {op!r}")

    def experiment_id(self) -> str:
        key = f"experiment:{self.experiment}"
        known = self.outbox.resolve(key)
        if known is not None and known != key:
            return known
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            location = self.artifact_dir.resolve().as_uri() if self.artifact_dir else None
            exp_id = self.client.create_experiment(
                self.experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
            )
        else:
            exp_id = exp.experiment_id
            if EXPERIMENT_KIND not in exp.tags:  # made by hand or by an older catal
                self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
        self.outbox.name(key, exp_id)
        return exp_id

    def _create_run(self, args: dict) -> str:
        """The run, once: a create whose answer was lost, or a child run made again after a
        stop (``child_handle``), finds the run tagged with the handle and reopens it."""
        exp_id, handle = self.experiment_id(), args["handle"]
        try:
            run_id = self.run(handle)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":  # anything but "not created yet"
                raise
        else:
            self.client.update_run(run_id, status="RUNNING")  # ended KILLED by the stop, say
            return run_id
        tags = dict(args["tags"], **{"catal.handle": handle})
        if "mlflow.parentRunId" in tags:
            tags["mlflow.parentRunId"] = self.run(tags["mlflow.parentRunId"])
        return self.client.create_run(exp_id, run_name=args["name"], tags=tags).info.run_id

    def _log_model(self, run_id: str, checkpoint: Path) -> None:
        try:
            model, _ = load_checkpoint(checkpoint)
        except DamagedFile as err:  # damaged since it was queued: this record cannot be sent
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        self.client.log_artifact(run_id, str(checkpoint), "model")
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=run_id):
            # pickle format: loading it needs catal importable (pip install catal)
            mlflow.pytorch.log_model(
                model.eval(),
                name="pytorch_model",
                serialization_format="pickle",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "catal"],
            )
