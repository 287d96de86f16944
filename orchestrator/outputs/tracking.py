"""MLflow tracking (the only module importing mlflow): one parent run per campaign, one nested
child run per round, metrics in batches, plots and picked structures as artifacts."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

PARAM_BATCH = 100  # MLflow's per-request limit on params
# MLflow 3's UI opens an experiment by its kind: without this tag it may offer the GenAI
# (traces) view; catal's runs are model training, shown on the runs table with metric charts
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# keep the console for catal's own progress: MLflow's table-creation INFO and pickle notes are noise
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)


class Tracker:
    def __init__(self, uri: str, experiment: str, artifact_dir: Path | None = None):
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_dir.resolve().as_uri() if artifact_dir else None
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
            )
        else:
            self.experiment_id = exp.experiment_id
            if EXPERIMENT_KIND not in exp.tags:  # made by hand or by an older catal
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)

    def start_campaign(self, name: str, params: dict, run_id: str | None = None) -> str:
        """Create the parent run (or reopen it on resume) and log the flattened config."""
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"catal.kind": "campaign"})
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), PARAM_BATCH):
            self.client.log_batch(run.info.run_id, params=items[start : start + PARAM_BATCH])
        return run.info.run_id

    def start_round(self, parent_id: str, rnd: int, run_id: str | None = None, kind: str = "round") -> str:
        """A nested child run for round ``rnd`` (reused when resuming that round); ``kind``
        "generation": the asynchronous campaign's model ``rnd``, with a round's metrics."""
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{kind}_{rnd:03d}",
            tags={"mlflow.parentRunId": parent_id, "catal.kind": kind, "catal.round": str(rnd)},
        )
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        """All metrics in one request (one call per metric is slow). NaN is kept (MLflow
        stores it): an undefined value, e.g. a Spearman over one pick, stays visible."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_artifacts(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        for p in paths:
            if Path(p).exists():
                self.client.log_artifact(run_id, str(p), artifact_path)

    def log_model(self, run_id: str, model, checkpoint: Path) -> None:
        """The final model: the checkpoint file and an ``mlflow.pytorch`` model."""
        self.client.log_artifact(run_id, str(checkpoint), "model")
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=run_id):
            # pickle format: loading it needs catal importable (pip install catal)
            mlflow.pytorch.log_model(
                model,
                name="pytorch_model",
                serialization_format="pickle",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "catal"],
            )

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def rounds(self, parent_id: str) -> list:
        """Child runs of a campaign, by round."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
        return sorted(runs, key=lambda r: int(r.data.tags.get("catal.round", 0)))
