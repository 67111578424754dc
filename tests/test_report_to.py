"""Where metrics go: `report_to` names the trackers besides metrics.jsonl; Weights & Biases in offline mode (no
network) receives every record, and a resumed run continues the same W&B run."""

import pytest

from rlvr.config import TrainConfig
from rlvr.metrics import MetricsSink
from rlvr.trainer import Trainer
from test_trainer import easy_config


def test_unknown_trackers_are_named():
    with pytest.raises(ValueError, match="unknown tracker\\(s\\) \\['mlflow'\\]"):
        TrainConfig(report_to=["tensorboard", "mlflow"])
    assert TrainConfig(report_to="none").report_to == [] and TrainConfig(report_to="wandb").report_to == ["wandb"]
    assert TrainConfig(report_to="[tensorboard, wandb]").report_to == ["tensorboard", "wandb"]


def test_wandb_offline_gets_every_record_and_a_resume_continues_its_run(tmp_path, monkeypatch, request):
    wandb = pytest.importorskip("wandb")
    request.addfinalizer(wandb.teardown)  # W&B's service process outlives its runs; later tests count children
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    sink = MetricsSink(run, ["wandb"], config={"lr": 0.1})
    run.mkdir()
    sink.reset()
    for step in range(3):
        sink.write({"step": step, "reward": step / 4, "note": "not a number"})
    summary = dict(sink._run.summary)
    run_id, config = sink._run.id, dict(sink._run.config)
    sink.close()
    # W&B commits a step when the next one starts (two records of one step merge), the last one at finish
    assert summary["reward"] == 0.25 and summary["_step"] == 1 and "note" not in summary and config == {"lr": 0.1}
    assert run_id == (run / "wandb_id").read_text().strip()
    [log] = run.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    assert log.stat().st_size > 0
    with Trainer(easy_config(tmp_path, steps=2, save_every=1, eval_every=2, report_to=["wandb"])) as trainer:
        trainer.train()  # a fresh run: a W&B run of its own
    fresh = (run / "wandb_id").read_text().strip()
    assert fresh != run_id
    with Trainer(easy_config(tmp_path, steps=3, save_every=1, eval_every=2, report_to=["wandb"])) as trainer:
        trainer.train(resume=True)
        assert trainer.metrics._run is None  # closed with the run
    assert (run / "wandb_id").read_text().strip() == fresh  # the resumed run continues the same W&B run
    # a second directory of the same run (W&B suffixes "-1" when both start in the same second)
    assert len(list(run.glob(f"wandb/offline-run-*-{fresh}*/run-{fresh}.wandb"))) == 2
