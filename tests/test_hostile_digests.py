"""Fingerprints are checked against the files (issue 18, cause 2): every output a later stage
consumes is recorded in its folder's digests.json; every open checks sizes and sampled blocks
(every byte when a file's mtime changed), and a folder about to be reused as finished is hashed
in full. Each test is one hostile case of the issue."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_trust_runs import SMALL  # the very small real study of that file: seconds per `reproduce`

from ecgssl_nb import atomic, provenance
from ecgssl_nb.analysis import results
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.study.reproduce import reproduce
from ecgssl_nb.stages import finetune as ft
from ecgssl_nb.stages import pretrain as pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PRE_RUN = dict(modality="time", records=8, progress=False)
PRE_RUN["settings"] = ["epochs=2", "batch_size=4", "out_dim=64", "base_lr=0.5", "warmup_epochs=0"]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def zero_signals(path: Path, keep_mtime: bool = False) -> None:
    """Overwrite the samples of a .npy file with zeros in place (same size, same header)."""
    st = path.stat()
    header = np.load(path, mmap_mode="r").offset
    with open(path, "r+b") as fh:
        fh.seek(header)
        fh.write(bytes(st.st_size - header))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small records folder, its prepared folder (read-only here), and another backbone."""
    root = tmp_path_factory.mktemp("digests")
    make_fixture(root / "records", n_records=60, seed=0)
    prepared = prepare(root / "records", root / "prepared", workers=1, progress=False)
    return {"records": root / "records", "prepared": prepared, "root": root}


def own_copy(data, tmp_path) -> tuple[Path, Path]:
    """(records, prepared) in tmp_path for a test to damage: the records copied with their mtimes
    (cp -a), prepared from there (the data folder is part of a prepared folder's request)."""
    rec = tmp_path / "records"
    shutil.copytree(data["records"], rec)
    return rec, prepare(rec, tmp_path / "prepared", workers=1, progress=False)


# --- the prepared corpus ------------------------------------------------------------------------


def test_signals_zeroed_in_place_are_refused_on_open_and_prepare_rebuilds_them(data, tmp_path, capsys):
    records, prep = own_copy(data, tmp_path)
    good = sha(prep / "signals.npy")
    zero_signals(prep / "signals.npy")
    with pytest.raises(UserError, match=r"signals\.npy changed since it was written"):
        load_prepared(prep)  # so no stage trains on zeros under the old digest
    with pytest.raises(UserError, match=r"signals\.npy changed since it was written.*--force"):
        prepare(records, prep, workers=1, progress=False)  # never "already prepared"
    assert "already prepared" not in capsys.readouterr().err
    prepare(records, prep, workers=1, progress=False, force=True)  # what reproduce does: rebuilt
    assert sha(prep / "signals.npy") == good and load_prepared(prep).digest == load_prepared(data["prepared"]).digest
    (aside,) = tmp_path.glob("prepared.stale-*")  # the damaged folder is kept, not deleted
    assert sha(aside / "signals.npy") != good


def test_signals_zeroed_with_their_mtime_restored_fail_the_sampled_blocks(data, tmp_path):
    _, prep = own_copy(data, tmp_path)
    zero_signals(prep / "signals.npy", keep_mtime=True)
    with pytest.raises(UserError, match=r"signals\.npy changed since it was written \(sampled blocks differ\)"):
        load_prepared(prep)


def test_a_mat_rewritten_in_place_under_its_untouched_header_is_prepared_again(data, tmp_path, capsys):
    records, prep = own_copy(data, tmp_path)
    before = load_prepared(prep)
    mat = (records / before.index["path"].iloc[0]).with_suffix(".mat")
    hea = mat.with_suffix(".hea")
    hea_stat, size = hea.stat(), mat.stat().st_size
    raw = bytearray(mat.read_bytes())
    tail = np.frombuffer(bytes(raw[-400:]), dtype="<i2")
    raw[-400:] = (-tail).astype("<i2").tobytes()  # the last 200 samples negated: same size, other data
    mat.write_bytes(bytes(raw))
    assert mat.stat().st_size == size and hea.stat().st_mtime_ns == hea_stat.st_mtime_ns
    with pytest.raises(UserError, match=r"made by a different request: inputs\.headers"):
        prepare(records, prep, workers=1, progress=False)
    assert "already prepared" not in capsys.readouterr().err
    prepare(records, prep, workers=1, progress=False, force=True)
    assert load_prepared(prep).digest != before.digest


def test_the_cheap_check_reads_sampled_blocks_and_the_full_check_every_byte(tmp_path):
    """The design: a change outside the sampled blocks with the mtime put back passes the check on
    open (about 1 MiB read) and fails the full one; a new mtime alone (a copy) costs a full hash
    and passes."""
    folder = tmp_path / "stage"
    folder.mkdir()
    provenance.write(folder, provenance.request("test", {}, {}, 0))
    big = folder / "big.bin"
    big.write_bytes(np.random.default_rng(0).bytes(8 << 20))  # 8 MiB: 16 blocks of 64 KiB sampled
    provenance.write_digests(folder, ("big.bin",))
    assert provenance.digest_fault(folder, ("big.bin",)) is None
    st = big.stat()
    with open(big, "r+b") as fh:
        fh.seek(300_000)  # between the first block (0..64 KiB) and the second (~524 KiB)
        fh.write(b"\0" * 8)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert provenance.digest_fault(folder, ("big.bin",)) is None
    assert "SHA-256 differs" in provenance.digest_fault(folder, ("big.bin",), full=True)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the mtime moved: every byte is read
    assert "SHA-256 differs" in provenance.digest_fault(folder, ("big.bin",))
    assert "records no digest of other.bin" in provenance.digest_fault(folder, ("big.bin", "other.bin"))


def test_verify_hashes_every_recorded_output_and_names_a_changed_one(data, tmp_path, capsys):
    _, prep = own_copy(data, tmp_path)
    assert main(["verify", str(tmp_path)]) == 0
    assert f"ok         {prep}: prepare" in capsys.readouterr().out
    signals = prep / "signals.npy"
    assert signals.stat().st_size > 2 * provenance.SAMPLE_BLOCKS * provenance.SAMPLE_BLOCK  # so 100 000 is unsampled
    st = signals.stat()
    with open(signals, "r+b") as fh:  # one byte between sampled blocks, mtime put back
        fh.seek(100_000)
        byte = fh.read(1)[0]
        fh.seek(100_000)
        fh.write(bytes([byte ^ 0xFF]))
    os.utime(signals, ns=(st.st_atime_ns, st.st_mtime_ns))
    load_prepared(prep)  # the cheap check does not see it ...
    assert main(["verify", str(tmp_path)]) == 2  # ... the full one does
    out, err = capsys.readouterr()
    assert f"changed    {prep}: {signals} changed since it was written (its SHA-256 differs)" in out
    assert err.count("\n") == 1 and "1 of 1 folders" in err


# --- fine-tuning results --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_t0(data):
    """A finished fine-tuning (setup t, fold 0, 0 epochs) on the small corpus; copy it to change it."""
    out = data["root"] / "run-t0"
    ft.finetune("t", 0, data["prepared"], out, profile=SMALL, settings=["epochs.t=0"], progress=False)
    return out


def test_provenance_edited_to_another_epoch_count_does_not_return_the_old_result(data, run_t0, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_t0, out)
    rec = json.loads((out / "provenance.json").read_text())
    rec["request"]["settings"]["config"]["epochs"]["t"] = 1  # by hand: as if this run had trained 1 epoch
    (out / "provenance.json").write_text(json.dumps(rec))
    kw = dict(profile=SMALL, settings=["epochs.t=1"], progress=False)
    with pytest.raises(UserError, match=r"provenance\.json is not the one its outputs were made under.*--force"):
        ft.finetune("t", 0, data["prepared"], out, **kw)
    assert json.loads((out / "result.json").read_text())["epochs"] == 0  # the refusal changed nothing
    assert ft.finetune("t", 0, data["prepared"], out, force=True, **kw)["epochs"] == 1
    (aside,) = tmp_path.glob("run.stale-*")
    assert json.loads((aside / "result.json").read_text())["epochs"] == 0


def test_a_damaged_finished_finetune_forced_aside_records_how_its_new_run_is_executed(data, run_t0, tmp_path):
    # the new run's provenance.json holds its execution settings (compile, checkpoint cadence, ...),
    # as a first run's does: moving a damaged result aside is no reason to lose them
    out = tmp_path / "run"
    shutil.copytree(run_t0, out)
    (out / "predictions.csv").write_text("record\n")
    kw = dict(profile=SMALL, settings=["epochs.t=0"], progress=False)
    with pytest.raises(UserError, match=r"predictions\.csv changed since it was written.*--force"):
        ft.finetune("t", 0, data["prepared"], out, **kw)
    res = ft.finetune("t", 0, data["prepared"], out, force=True, **kw)
    assert provenance.read(out)["recorded"] == provenance.read(run_t0)["recorded"] == res["provenance"]["recorded"]
    (aside,) = tmp_path.glob("run.stale-*")
    assert (aside / "predictions.csv").read_text() == "record\n"


def test_a_result_edited_by_hand_is_left_out_of_the_tables_naming_why(run_t0, tmp_path):
    root = tmp_path / "finetune"
    shutil.copytree(run_t0, root / "t" / "fold0")
    path = root / "t" / "fold0" / "result.json"
    assert len(results.load_results(root)) == 2  # paper and honest
    obj = json.loads(path.read_text())
    obj["metrics"]["paper"]["auroc"] = 0.99
    atomic.write_json_atomic(path, obj)
    with pytest.warns(results.ResultFileWarning, match=r"result\.json changed since it was written"):
        assert results.load_results(root).empty


def test_predictions_edited_by_hand_are_not_pooled_or_reported(run_t0, tmp_path):
    from ecgssl_nb.study import paths
    from ecgssl_nb.analysis import claims, training

    run = paths.finetune_dir(tmp_path, "tiny", "t", 0)
    shutil.copytree(run_t0, run)
    assert len(claims.pooled_oof(run.parent.parent)) == 1
    pred = run / "predictions.csv"
    pred.write_text(pred.read_text().replace("0.", "0.9", 1))
    with pytest.warns(results.ResultFileWarning, match=r"predictions\.csv changed since it was written"):
        assert claims.pooled_oof(run.parent.parent).empty
    with pytest.raises(UserError, match=r"predictions\.csv changed since it was written"):
        training.pooled_auroc(tmp_path, "tiny", "t", folds=(0,))


def test_a_truncated_result_is_run_again_by_reproduce_and_tabled(data, tmp_path):
    kw = dict(out=tmp_path, setups="t", folds="0", ablation=False, progress=False)
    reproduce(SMALL, data_dir=data["records"], **kw)
    path = tmp_path / "tiny" / "finetune" / "t" / "fold0" / "result.json"
    table = (tmp_path / "tiny" / "tables" / "table2.csv").read_text()
    path.write_bytes(path.read_bytes()[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", results.ResultFileWarning)
        reproduce(SMALL, data_dir=data["records"], **kw)
    runs = json.loads((tmp_path / "tiny" / "manifest.json").read_text())["runs"]
    assert runs["finetune t fold 0"]["status"] == "done"  # not "skipped"
    assert json.loads(path.read_text())["setup"] == "t"
    assert (tmp_path / "tiny" / "tables" / "table2.csv").read_text() == table  # the same run, the same numbers


# --- backbones ------------------------------------------------------------------------------------


def test_a_replaced_backbone_is_written_again_from_its_pretraining_checkpoint(data, tmp_path):
    out, other = tmp_path / "pre", tmp_path / "other"
    pretrain_stage.pretrain(data["prepared"], out, **PRE_RUN)
    pretrain_stage.pretrain(data["prepared"], other, seed=7, **PRE_RUN)
    good = sha(out / "backbone.pt")
    shutil.copy(other / "backbone.pt", out / "backbone.pt")
    with pytest.raises(UserError, match=r"backbone\.pt changed since it was written.*not the time backbone"):
        ft.resolve_pretrained("ssl-t", {"time": out})  # no fine-tuning adopts it
    pretrain_stage.pretrain(data["prepared"], out, resume=True, **PRE_RUN)  # never "already finished"
    assert sha(out / "backbone.pt") == good
    assert ft.resolve_pretrained("ssl-t", {"time": out}) == {"time": out / "backbone.pt"}


def test_reproduce_does_not_adopt_a_backbone_of_another_pretraining(data, tmp_path):
    kw = dict(out=tmp_path, setups="ssl-t", folds="0", ablation=False, progress=False)
    reproduce(SMALL, data_dir=data["records"], **kw)
    root = tmp_path / "tiny"
    good = sha(root / "pretrain" / "time" / "backbone.pt")
    table = (root / "tables" / "table2.csv").read_text()
    other = tmp_path / "other"
    pretrain_stage.pretrain(root / "prepared", other, seed=7, **PRE_RUN)
    shutil.copy(other / "backbone.pt", root / "pretrain" / "time" / "backbone.pt")
    reproduce(SMALL, data_dir=data["records"], **kw)
    assert sha(root / "pretrain" / "time" / "backbone.pt") == good
    res = json.loads((root / "finetune" / "ssl-t" / "fold0" / "result.json").read_text())
    assert res["provenance"]["request"]["inputs"]["backbone.time"] == good
    assert (root / "tables" / "table2.csv").read_text() == table


def test_a_damaged_finished_pretraining_without_its_checkpoint_is_refused_then_forced_aside_as_fine_tuning_is(
    data, tmp_path
):
    # the same claim as a fine-tuning's (`stage.claim`): refused naming the file, then with --force
    # moved aside and run again, its provenance recording how the new run is executed
    out = tmp_path / "pre"
    pretrain_stage.pretrain(data["prepared"], out, **PRE_RUN)
    recorded = provenance.read(out)["recorded"]
    (out / "checkpoint.pt").unlink()  # nothing to write the outputs again from
    (out / "summary.json").write_text("{}")
    with pytest.raises(UserError, match=r"summary\.json changed since it was written.*--force"):
        pretrain_stage.pretrain(data["prepared"], out, resume=True, **PRE_RUN)
    pretrain_stage.pretrain(data["prepared"], out, resume=True, force=True, **PRE_RUN)
    assert (
        provenance.read(out)["recorded"] == recorded and json.loads((out / "summary.json").read_text())["epochs"] == 2
    )
    (aside,) = tmp_path.glob("pre.stale-*")
    assert (aside / "summary.json").read_text() == "{}"
