"""A refusal changes nothing, and the remedy an error names, followed, works (issue 18, cause 4).
Each test provokes the refusal, checks that nothing was moved, deleted or half-written, then does
what the message says and checks that it worked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_download import Server, challenge_archive, sums_file
from test_prepare_trust import _good
from test_trust_runs import PRE_RUN, _result

from ecgssl_nb.data import download as D
from ecgssl_nb import atomic, provenance
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.study.reproduce import write_tables
from ecgssl_nb.stages import pretrain as pretrain_stage


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- tables: a refused write leaves the tables that were there ---------------------------------


def test_a_refused_table_write_keeps_the_old_tables_and_its_remedy_works(tmp_path):
    ft_root = tmp_path / "tiny" / "finetune"
    atomic.write_json_atomic(ft_root / "t/fold0/result.json", _result("t", 0, "aaa", 0.1))
    atomic.write_json_atomic(ft_root / "tsg/fold0/result.json", _result("tsg", 0, "aaa", 0.1))
    assert "table2" in write_tables(tmp_path, "tiny")
    tables = tmp_path / "tiny" / "tables"
    before = _tree(tables)

    atomic.write_json_atomic(ft_root / "tsg/fold1/result.json", _result("tsg", 1, "bbb", 0.1))  # other data
    with pytest.raises(UserError, match="different prepared data") as err:
        write_tables(tmp_path, "tiny")
    assert _tree(tables) == before and not list(tables.parent.glob("tables.stale-*"))  # nothing moved

    m = re.search(r"rename e\.g\. (\S+) to (\S+) beside it", str(err.value))
    assert m, str(err.value)
    folder = Path(m.group(1))
    folder.rename(folder.with_name(m.group(2)))  # the remedy, as written
    assert "table2" in write_tables(tmp_path, "tiny")
    assert "reproduce` does" not in str(err.value)  # the old remedy promised a re-run that never came


def test_a_table_write_refused_by_aggregate_keeps_the_old_tables(tmp_path):
    ft_root = tmp_path / "tiny" / "finetune"
    atomic.write_json_atomic(ft_root / "t/fold0/result.json", _result("t", 0, "aaa", 0.1))
    assert "table2" in write_tables(tmp_path, "tiny")
    tables = tmp_path / "tiny" / "tables"
    before = _tree(tables)
    atomic.write_json_atomic(ft_root / "t/fold1/result.json", dict(_result("t", 1, "aaa", 0.1), smoke=True))
    with pytest.raises(UserError, match="mix smokes"):  # a smoke run beside a full one
        write_tables(tmp_path, "tiny")
    assert _tree(tables) == before and not list(tables.parent.glob("tables.stale-*"))


# --- prepare: the remedy load_prepared names rebuilds, moving the damaged folder aside ----------


def _truncate_signals(out: Path) -> None:
    sig = out / "signals.npy"
    sig.write_bytes(sig.read_bytes()[: sig.stat().st_size // 2])


DAMAGE = {
    "truncated signals.npy": _truncate_signals,
    ".complete.json removed": lambda out: (out / ".complete.json").unlink(),
    "index.csv removed": lambda out: (out / "index.csv").unlink(),
    "stats.json not JSON": lambda out: (out / "stats.json").write_text("{"),
    "provenance.json not JSON": lambda out: (out / "provenance.json").write_text("{"),
    "signals.npy of another dtype": lambda out: np.save(out / "signals.npy", np.zeros((10, 12), np.float64)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_prepare_force_rebuilds_a_damaged_prepared_folder_as_load_prepared_says(tmp_path, damage, capsys):
    _good(tmp_path / "data")
    out = prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    good = load_prepared(out).digest
    DAMAGE[damage](out)
    damaged = _tree(out)
    with pytest.raises(UserError) as err:
        load_prepared(out)
    msg = str(err.value)
    assert f"prepare --data-dir D --out {out}" in msg and "--force" in msg, msg
    assert main(["prepare", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--workers", "1"]) == 2
    assert "--force" in capsys.readouterr().err and _tree(out) == damaged  # never "already prepared"

    assert main(["prepare", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--force", "--workers", "1"]) == 0
    assert "nothing to do" not in capsys.readouterr().err
    assert load_prepared(out).digest == good  # rebuilt
    (aside,) = tmp_path.glob("out.stale-*")
    assert _tree(aside) == damaged  # moved aside, never deleted


# --- download: a folder it did not make is never deleted --------------------------------------


def test_download_refuses_a_source_folder_it_did_not_make_and_force_moves_it_aside(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "CPSC").mkdir(parents=True)
    (data / "CPSC" / "my-notes.txt").write_text("a week of annotations")
    name = D.ARCHIVES["CPSC"].file
    archive = challenge_archive(tmp_path, "Training_WFDB", ["A0001"])
    argv = [
        "download",
        "--from",
        "bucket",
        "--out",
        str(data),
        "--sources",
        "CPSC",
        "--sha256",
        str(sums_file(tmp_path, {name: archive})),
    ]
    with Server({name: archive}) as srv:
        assert main([*argv, "--base-url", srv.url]) == 2
        err = capsys.readouterr().err
        assert "holds files but no .complete marker" in err and "--force" in err and len(err.strip().splitlines()) == 1
        assert srv.log == [] and _tree(data) == {"CPSC/my-notes.txt": b"a week of annotations"}
        assert D.source_state(data, D.ARCHIVES["CPSC"]) == "in the way"
        with pytest.raises(UserError, match="no .complete marker"):  # extract() on its own refuses too
            D.extract(tmp_path / "x.tar.gz", data / "CPSC")

        assert main([*argv, "--base-url", srv.url, "--force"]) == 0  # the remedy
    assert (data / "CPSC" / ".complete").exists() and (data / "CPSC" / "Training_WFDB" / "A0001.hea").exists()
    (kept,) = (data / ".moved-aside").glob("CPSC.stale-*/my-notes.txt")
    assert kept.read_text() == "a week of annotations"


# --- provenance: a damaged record is refused, and --force moves it aside -----------------------


def test_a_damaged_provenance_json_is_refused_and_force_moves_the_folder_aside(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "provenance.json").write_text('{"request": ')
    (folder / "log.csv").write_text("epoch\n1\n")
    req = provenance.request("finetune", {"epochs": 3}, {"prepared": "aaa"}, 0)
    with pytest.raises(UserError, match=r"provenance.json is damaged .* or --force to move it aside"):
        provenance.claim(folder, req)
    assert _tree(folder) == {"log.csv": b"epoch\n1\n", "provenance.json": b'{"request": '}

    assert provenance.claim(folder, req, force=True) == "moved"  # the remedy
    assert provenance.read(folder)["request"] == req
    (aside,) = tmp_path.glob("run.stale-*")
    assert (aside / "log.csv").read_text() == "epoch\n1\n"


def test_a_damaged_provenance_json_in_a_prepare_out_is_moved_aside_with_force(tmp_path):
    _good(tmp_path / "data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "provenance.json").write_text("not json")
    with pytest.raises(UserError, match="--force to move it aside"):
        prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    assert _tree(tmp_path / "out") == {"provenance.json": b"not json"}  # untouched
    prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False, force=True)
    assert len(load_prepared(tmp_path / "out")) == 4 and len(list(tmp_path.glob("out.stale-*"))) == 1


def test_a_pretraining_with_a_damaged_provenance_json_runs_after_force_as_its_message_says(tmp_path):
    make_fixture(tmp_path / "data", n_records=24, seed=0)
    prep = prepare(tmp_path / "data", tmp_path / "prep", workers=1, progress=False)
    out = tmp_path / "pre"
    out.mkdir()
    (out / "provenance.json").write_bytes(b"\x00" * 40)  # e.g. a crash of the file system
    (out / "log.csv").write_text("epoch\n")
    with pytest.raises(UserError, match="--force to move it aside"):
        pretrain_stage.pretrain(prep, out, **PRE_RUN)
    assert (out / "provenance.json").read_bytes() == b"\x00" * 40
    pretrain_stage.pretrain(prep, out, force=True, **PRE_RUN)  # the remedy
    assert (out / "backbone.pt").is_file() and provenance.read(out)["request"]["stage"] == "pretrain"
    (aside,) = tmp_path.glob("pre.stale-*")
    assert (aside / "provenance.json").read_bytes() == b"\x00" * 40
