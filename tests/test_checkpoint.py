"""The one checkpoint rule of both training stages: no checkpoint = a fresh run; a checkpoint
without --resume is refused (never silently started over); with --resume only the same run
continues. Saves are atomic, loads are weights-only, the RNG state round-trips exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ecgssl_nb import checkpoint
from ecgssl_nb.core.errors import UserError

RUN = {"setup": "t", "fold": 0, "config": {"lr": 0.001}}


def test_no_checkpoint_is_a_fresh_run_with_or_without_resume(tmp_path):
    assert checkpoint.load(tmp_path / "checkpoint.pt", resume=False, run=RUN) is None
    assert checkpoint.load(tmp_path / "checkpoint.pt", resume=True, run=RUN) is None


def test_a_checkpoint_without_resume_is_refused_on_one_line_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"run": RUN, "epoch": 1})
    with pytest.raises(UserError, match="unfinished run") as err:
        checkpoint.load(path, resume=False, run=RUN)
    msg = str(err.value)
    assert str(path) in msg and "--resume" in msg and "remove checkpoint.pt" in msg and "\n" not in msg
    assert checkpoint.load(path, resume=True, run=RUN)["epoch"] == 1


def test_resume_refuses_a_checkpoint_of_other_settings_naming_the_keys(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"run": RUN, "epoch": 1})
    with pytest.raises(UserError, match=r"different settings \(config, fold\)"):
        checkpoint.load(path, resume=True, run={**RUN, "fold": 1, "config": {"lr": 0.01}})
    checkpoint.save(path, {"epoch": 1})  # no "run" at all
    with pytest.raises(UserError, match=r"different settings \(config, fold, setup\)"):
        checkpoint.load(path, resume=True, run=RUN)
    # keys the caller does not ask about are not compared (selfkd leaves out the profile's name)
    checkpoint.save(path, {"run": {**RUN, "profile": "tiny"}, "epoch": 2})
    assert checkpoint.load(path, resume=True, run=RUN)["epoch"] == 2


def test_a_save_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"run": RUN, "epoch": 1})

    def dies(obj, f):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"run": RUN, "epoch": 2})
    monkeypatch.undo()
    assert checkpoint.load(path, resume=True, run=RUN)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(4)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"run": RUN, "rng": checkpoint.rng_state(gen)})
    draws = (random.random(), np.random.rand(3), torch.rand(3), torch.rand(3, generator=gen))
    for reseed in (random.seed, np.random.seed, torch.manual_seed, gen.manual_seed):
        reseed(9)  # move every generator away from the saved state
    checkpoint.set_rng_state(checkpoint.load(path, resume=True, run=RUN)["rng"], gen)
    again = (random.random(), np.random.rand(3), torch.rand(3), torch.rand(3, generator=gen))
    assert draws[0] == again[0] and np.array_equal(draws[1], again[1])
    assert torch.equal(draws[2], again[2]) and torch.equal(draws[3], again[3])


def test_numpy_arrays_travel_as_tensors_and_come_back_equal(tmp_path):
    best = {"paper": {"epoch": 2, "score": 0.5, "outer": np.random.rand(4, 24), "gate": None}, "honest": None}
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"run": RUN, "best": checkpoint.to_tensors(best)})
    back = checkpoint.to_arrays(checkpoint.load(path, resume=True, run=RUN)["best"])
    assert back["honest"] is None and back["paper"]["gate"] is None and back["paper"]["epoch"] == 2
    assert np.array_equal(back["paper"]["outer"], best["paper"]["outer"])
    assert back["paper"]["outer"].dtype == np.float64
