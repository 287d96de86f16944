"""The tracking outbox: writes to an unreachable MLflow are kept, in order, and reach the
server once when it answers; a lost answer never makes a second run; a refused record is
skipped without blocking the rest."""

import socket

from mlflow import MlflowClient

from orchestrator.outputs.outbox import Outbox
from orchestrator.outputs.tracking import Tracker


def _closed_port_uri() -> str:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _tracker(uri: str, tmp_path, warn) -> Tracker:
    """A tracker on ``uri`` whose outbox and MLflow artifacts stay under ``tmp_path``."""
    return Tracker(uri, "exp", tmp_path / "artifacts", outbox=tmp_path / "outbox.db", warn=warn)


def _campaign(tracker: Tracker) -> tuple[str, str]:
    parent = tracker.start_campaign("c", {"a": 1, "b": "x"})
    child = tracker.start_round(parent, 1)
    tracker.log_metrics(child, {"holdout_force_mae": 0.5}, step=1)
    tracker.log_metrics(parent, {"holdout_force_mae": 0.5}, step=1)
    tracker.end(child)
    tracker.log_metrics(parent, {"final_holdout_force_mae": 0.25}, step=2)
    tracker.end(parent)
    return parent, child


def test_an_away_server_gets_every_record_once_when_it_answers(tmp_path):
    warnings: list[str] = []
    away = _tracker(_closed_port_uri(), tmp_path, warnings.append)
    parent, _ = _campaign(away)
    assert away.queued == 8 and len(warnings) == 1 and "unreachable" in warnings[0]
    away.outbox.close()

    # the server "comes back": the same outbox, now sent to a store that answers
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    back = _tracker(uri, tmp_path, warnings.append)
    assert back.queued == 0 and "took the 8 records an earlier session had queued" in warnings[-1]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    p = next(r for r in runs if r.data.tags["catal.kind"] == "campaign")
    c = next(r for r in runs if r.data.tags["catal.kind"] == "round")
    assert p.info.status == c.info.status == "FINISHED"
    assert p.data.params == {"a": "1", "b": "x"}
    assert c.data.tags["mlflow.parentRunId"] == p.info.run_id
    assert [m.step for m in client.get_metric_history(p.info.run_id, "holdout_force_mae")] == [1]
    assert p.data.metrics["final_holdout_force_mae"] == 0.25
    assert back.outbox.resolve(parent) == p.info.run_id  # handles resolve to the server's ids


def test_a_server_back_during_the_run_gets_the_queue_at_the_next_try(tmp_path):
    said: list[str] = []
    tracker = _tracker(_closed_port_uri(), tmp_path, said.append)
    parent = tracker.start_campaign("c", {"a": 1})
    tracker.log_metrics(parent, {"m": 1.0}, step=1)
    assert tracker.queued == 3 and len(said) == 1
    tracker.log_metrics(parent, {"m": 2.0}, step=2)  # within the retry wait: queued, not tried
    assert tracker.queued == 4 and len(said) == 1
    # the same tracker, its server now answering (a store that does), tried again
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker.client = tracker.writer.client = MlflowClient(uri)
    tracker.tried_at -= tracker.retry_s
    tracker.end(parent)
    assert tracker.queued == 0 and said[-1].endswith("answers again: 5 queued records sent")
    run = MlflowClient(uri).get_run(tracker.outbox.resolve(parent))
    assert run.info.status == "FINISHED"
    assert [m.value for m in MlflowClient(uri).get_metric_history(run.info.run_id, "m")] == [1.0, 2.0]


def test_a_record_resent_after_a_lost_answer_changes_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = _tracker(uri, tmp_path, print)
    parent = tracker.start_campaign("c", {"a": 1})
    tracker.log_metrics(parent, {"m": 1.0}, step=1)
    # the server took these but the driver died before crossing them off: sent again
    out = Outbox(tmp_path / "outbox.db")
    out.put("create_run", handle=parent, name="c", tags={"catal.kind": "campaign"})
    out.put("log_params", run=parent, params=[["a", "1"]])
    out.put("log_metrics", run=parent, metrics=[["m", 1.0, 1000, 1]])
    out.put("log_metrics", run=parent, metrics=[["m", 1.0, 1000, 1]])
    assert tracker.flush(now=True)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1
    assert len(client.get_metric_history(runs[0].info.run_id, "m")) == 2  # the original + one copy of the resent


def test_a_refused_record_is_skipped_and_the_rest_still_go(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    said: list[str] = []
    tracker = _tracker(uri, tmp_path, said.append)
    parent = tracker.start_campaign("c", {"a": 1})
    tracker.outbox.put("log_params", run=parent, params=[["a", "2"]])  # MLflow refuses a changed param
    tracker.log_metrics(parent, {"m": 3.0})
    assert tracker.queued == 0 and len(said) == 1 and "refused a log_params record" in said[0]
    client = MlflowClient(uri)
    run = client.get_run(tracker.outbox.resolve(parent))
    assert run.data.params == {"a": "1"} and run.data.metrics == {"m": 3.0}


def test_a_damaged_outbox_is_set_aside_and_runs_resolve_from_their_tags(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    said: list[str] = []
    first = _tracker(uri, tmp_path, said.append)
    parent = first.start_campaign("c", {"a": 1})
    first.outbox.close()
    (tmp_path / "outbox.db").write_bytes(b"garbage" * 200)
    again = _tracker(uri, tmp_path, said.append)
    assert said and "outbox.db was damaged" in said[0] and (tmp_path / "outbox.db.damaged").exists()
    again.log_metrics(parent, {"m": 1.0})
    again.end(parent)
    assert again.queued == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.metrics == {"m": 1.0}


def test_a_stopped_campaign_closes_every_run_it_opened_even_one_its_caller_never_got(tmp_path):
    """A signal can land after a round's run is created and before the loop holds its handle:
    ``end_open`` closes it with the campaign's status all the same; ended runs stay ended."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = _tracker(uri, tmp_path, print)
    parent = tracker.start_campaign("c", {"a": 1})
    done = tracker.start_round(parent, 1)
    tracker.end(done)
    tracker.start_round(parent, 2)  # the handle the interrupted loop never stored
    tracker.end_open("KILLED")
    assert tracker.opened == []
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    status = {r.data.tags.get("catal.round", "campaign"): r.info.status for r in runs}
    assert status == {"campaign": "KILLED", "1": "FINISHED", "2": "KILLED"}


def test_a_child_run_made_again_after_a_stop_is_the_same_run_reopened(tmp_path):
    """A campaign killed (SIGKILL: nothing closed) or stopped (KILLED) after a generation's run
    was created but before its handle was stored makes that run again on resume: the same run
    comes back RUNNING and ends FINISHED; no second child of that number is left running."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _tracker(uri, tmp_path, print)
    parent = first.start_campaign("c", {"a": 1})
    first.start_round(parent, 1, kind="generation")  # killed here: the handle never stored
    first.start_round(parent, 2, kind="generation")
    first.end_open("KILLED")  # a SIGTERM: campaign and both children KILLED
    first.outbox.close()

    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("exp").experiment_id
    before = {r.data.tags.get("catal.round", "campaign"): r.info.run_id for r in client.search_runs([exp_id])}
    resumed = _tracker(uri, tmp_path, print)
    resumed.start_campaign("c", {"a": 1}, run_id=parent)
    for g in (1, 2, 3):
        child = resumed.start_round(parent, g, kind="generation")
        if g < 3:
            assert client.get_run(before[str(g)]).info.status == "RUNNING"  # reopened, not made anew
        resumed.log_metrics(child, {"m": float(g)}, step=g)
        resumed.end(child)
    resumed.end(parent)
    runs = client.search_runs([exp_id])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    after = {r.data.tags.get("catal.round", "campaign"): r for r in runs}
    assert {k: after[k].info.run_id for k in before} == before
    assert [after[str(g)].data.metrics["m"] for g in (1, 2, 3)] == [1.0, 2.0, 3.0]
