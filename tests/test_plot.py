"""`rlvr plot`: several runs overlaid per metric, one dashboard of the main panels, labels that tell runs apart."""

import json

import matplotlib
import pytest

from rlvr.cli import main
from rlvr.plot import DASHBOARD, draw, load_metrics, plot_runs, run_labels

matplotlib.use("Agg")


def fake_run(path, slope, with_kl=True):
    """A run directory whose metrics rise with `slope` (a KL term only `with_kl`), evaluated every 5 steps."""
    path.mkdir(parents=True)
    records = []
    for step in range(0, 21):
        record = {"step": step}
        if step:
            record.update(reward=slope * step / 20, length=8 - step / 5, entropy=1 - step / 40,
                          clip_frac_high=0.01 * slope, tokens_per_s=1000 + 10 * step)
            if with_kl:
                record["kl_ref"] = 0.001 * step
        if step % 5 == 0:
            record["eval/pass@1"] = min(1.0, 0.1 + slope * step / 25)
        records.append(record)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_three_runs_overlay_on_every_panel_and_a_dashboard(tmp_path, capsys):
    runs = [fake_run(tmp_path / name, slope, with_kl=name != "c") for name, slope in
            (("a", 0.5), ("b", 0.8), ("c", 1.0))]
    assert main(["plot", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    written = capsys.readouterr().out
    for name in ("reward.png", "eval_pass_at_1.png", "dashboard.png"):
        assert (tmp_path / "cmp" / name).exists() and name in written
    assert not (tmp_path / "cmp" / "episode_turns.png").exists()  # no run logged it
    import matplotlib.pyplot as plt

    runs_by_label = dict(zip(run_labels(runs), map(load_metrics, runs)))
    fig, ax = plt.subplots()
    assert draw(ax, runs_by_label, "reward", "reward") and len(ax.lines) == 3
    assert [line.get_label() for line in ax.lines] == ["a", "b", "c"]
    fig, ax = plt.subplots()
    assert draw(ax, runs_by_label, "kl_ref", "kl") and len(ax.lines) == 2  # run c has no KL term
    assert not draw(plt.subplots()[1], runs_by_label, "episode/turns", "turns")
    image = plt.imread(tmp_path / "cmp" / "dashboard.png")
    assert image.shape[1] > image.shape[0] > 400  # two rows of four panels
    assert len(DASHBOARD) == 7


def test_one_run_writes_into_its_own_plots_folder(tmp_path):
    run = fake_run(tmp_path / "run", 0.7)
    paths = plot_runs([run])
    assert run / "plots" / "dashboard.png" in paths and (run / "plots" / "reward.png").exists()


def test_labels_tell_runs_with_the_same_name_apart(tmp_path):
    assert run_labels([tmp_path / "x/seed0", tmp_path / "y/seed0"]) == ["x/seed0", "y/seed0"]
    with pytest.raises(ValueError, match="--out"):
        plot_runs([fake_run(tmp_path / "p", 1.0), fake_run(tmp_path / "q", 1.0)])
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        plot_runs([tmp_path / "nothing"], tmp_path / "out")
