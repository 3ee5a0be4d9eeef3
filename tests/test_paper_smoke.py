"""The paper path end to end on the CPU: `reproduce --profile paper --max-steps 1` on a small
fixture corpus, one outer fold, all eight setups, then the tables and the table notebooks.

The paper profile's exact settings run here (196/256 records x 10 views, a 65,536-wide DINO
head, 128/256 records x 5 crops in fine-tuning, 10 folds, its schedules), one optimisation step
per stage, so the paper path cannot break silently. Everything it writes is marked smoke.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from ecgssl_nb.study import paths
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.settings import SETUPS, get_profile
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.analysis.results import SETUP_LABELS, SMOKE_LABEL

ROOT = Path(__file__).resolve().parent.parent
# 300 records: 296 kept by prepare, enough for one spectrogram pre-training batch of 256 and
# ten stratified folds of about 30 records
N_RECORDS = 300


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """RUNS of `reproduce --profile paper --max-steps 1 --folds 0 --devices cpu` (no ablation)."""
    tmp = tmp_path_factory.mktemp("paper_smoke")
    make_fixture(tmp / "fixture", n_records=N_RECORDS, seed=0)
    rc = main(
        [
            "reproduce",
            "--profile",
            "paper",
            "--data-dir",
            str(tmp / "fixture"),
            "--out",
            str(tmp / "runs"),
            "--folds",
            "0",
            "--devices",
            "cpu",
            "--max-steps",
            "1",
            "--no-ablation",
            "--no-progress",
        ]
    )
    assert rc == 0
    return tmp / "runs"


@pytest.mark.slow
def test_paper_smoke_runs_every_stage_at_the_paper_settings_and_marks_it_smoke(smoke_runs):
    paper = get_profile("paper")
    root = paths.profile_root(smoke_runs, "paper")
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["smoke"] is True and manifest["max_steps"] == 1
    assert manifest["counts"] == {"done": 10, "skipped": 0, "failed": 0, "blocked": 0}  # 2 pre-trainings, 8 setups
    for m in ("time", "spec"):
        s = json.loads((paths.pretrain_run_dir(smoke_runs, "paper", m) / "summary.json").read_text())
        assert s["smoke"] is True and s["steps"] == 1 and s["epochs"] == paper.pretrain[m].epochs
        assert s["config"]["batch_size"] == paper.pretrain[m].batch_size and s["config"]["out_dim"] == 65536
        assert s["config"]["n_global"] + s["config"]["n_local"] == 10
    for setup in SETUPS:
        res = json.loads((paths.finetune_dir(smoke_runs, "paper", setup, 0) / "result.json").read_text())
        family = setup.removeprefix("ssl-")
        assert res["smoke"] is True and res["profile"] == "paper" and res["data"]["kind"] == "fixture"
        assert res["config"]["batch_records"] == paper.finetune.batch_records[family]
        assert res["epochs"] == paper.finetune.epochs[family] and len(res["history"]) == 1
        assert set(res["metrics"]) == {"paper", "honest"}
    table2 = pd.read_csv(paths.table_path(smoke_runs, "paper", "table2"))
    table1 = pd.read_csv(paths.table_path(smoke_runs, "paper", "table1"))
    assert table2["smoke"].all() and table1["smoke"].all()
    assert set(table2["setting"]) == {SETUP_LABELS[s] for s in SETUPS}
    assert set(table1["setting"]) == {"SSL-T", "SSL-S", "SSL-TSG"}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["05_table1", "06_table2"])
def test_table_notebooks_execute_on_the_paper_smoke_and_label_it_smoke(smoke_runs, notebook, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("ECGSSL_PROFILE", "paper")
    monkeypatch.setenv("ECGSSL_RUNS", str(smoke_runs))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = papermill.execute_notebook(
        jupytext.read(ROOT / "notebooks" / f"{notebook}.py"),
        str(tmp_path / "out.ipynb"),
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
    )
    shown = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert SMOKE_LABEL in shown  # every table of ours says it is a smoke run
