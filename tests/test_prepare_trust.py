"""prepare you can trust (issue 8): a prepared folder appears only complete, records what made it,
has one writer, refuses to replace something else without --force; bad signals, orphan signal
files, symlink loops and a full disk end in a reason or one clear line; load_prepared checks
what it opens."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_prepare import OUTPUTS, make_corpus
from test_records import rand_val, write_record

from ecgssl_nb.data import prepare as P
from ecgssl_nb import provenance
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _bytes(out: Path) -> dict:
    return {f: (out / f).read_bytes() for f in OUTPUTS}


def _good(root: Path, n: int = 4, seed: int = 0) -> None:
    for i in range(n):
        write_record(root / "cpsc", f"A{i:04d}", rand_val(n=1500, seed=seed + i), dx="#Dx: 426783006")


# --- atomic stage (finding 3) -------------------------------------------------------------------


def test_a_run_killed_while_assembling_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    _good(tmp_path / "data")
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    old = _bytes(tmp_path / "out")
    old_digest = P.load_prepared(tmp_path / "out").digest
    write_record(tmp_path / "data" / "cpsc", "A0100", rand_val(n=1500, seed=100), dx="#Dx: 164889003")

    real_write_csv = P._write_csv

    def dies_before_the_index(path, df, columns):  # signals.npy is already written by then
        if path.name == "index.csv":
            raise KeyboardInterrupt
        return real_write_csv(path, df, columns)

    monkeypatch.setattr(P, "_write_csv", dies_before_the_index)
    with pytest.raises(KeyboardInterrupt):
        P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False, force=True)
    assert _bytes(tmp_path / "out") == old  # never new signals beside the old index
    assert P.load_prepared(tmp_path / "out").digest == old_digest
    assert (P.staging_dir(tmp_path / "out") / "signals.npy").exists()  # the new one, not yet visible

    monkeypatch.undo()
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False, force=True)
    assert "A0100" in P.load_prepared(tmp_path / "out").index["record"].tolist()
    (aside,) = tmp_path.glob("out.stale-*")
    assert _bytes(aside) == old and not P.staging_dir(tmp_path / "out").exists()


def test_a_finished_staging_folder_is_renamed_in_without_redoing_work(tmp_path, monkeypatch):
    _good(tmp_path / "data")
    monkeypatch.setattr(P, "_swap_in", lambda stage, out: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(P, "_build", lambda *a, **k: pytest.fail("rebuilt a finished staging folder"))
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    assert len(P.load_prepared(tmp_path / "out")) == 4


# --- provenance, one writer, --force --------------------------------------------------------------


def test_provenance_records_the_request_and_code_version(tmp_path):
    _good(tmp_path / "data")
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, n_folds=3, seed=5, progress=False)
    rec = provenance.read(tmp_path / "out")
    req = rec["request"]
    assert req["stage"] == "prepare" and req["seed"] == 5 and req["settings"]["n_folds"] == 3
    assert req["settings"]["data_dir"] == str((tmp_path / "data").resolve())
    assert req["settings"]["max_abs_mv"] == 50.0 and set(req["inputs"]) == {"headers"}
    assert rec["code_version"] == provenance.code_version()
    done = json.loads((tmp_path / "out" / ".complete.json").read_text())
    assert req["inputs"]["headers"] == done["headers"] and done["digest"] == P.corpus_digest(tmp_path / "out")


def test_out_made_from_other_data_is_refused_and_moved_aside_with_force(tmp_path):
    _good(tmp_path / "a", seed=0)
    _good(tmp_path / "b", seed=10)
    P.prepare(tmp_path / "a", tmp_path / "out", workers=1, progress=False)
    old = _bytes(tmp_path / "out")
    with pytest.raises(UserError, match=r"--out .*out: it was made by a different request: inputs\.headers.*--force"):
        P.prepare(tmp_path / "b", tmp_path / "out", workers=1, progress=False)
    assert _bytes(tmp_path / "out") == old
    P.prepare(tmp_path / "b", tmp_path / "out", workers=1, progress=False, force=True)
    (aside,) = tmp_path.glob("out.stale-*")
    assert _bytes(aside) == old and _bytes(tmp_path / "out") != old  # moved, not deleted


def test_out_holding_foreign_files_is_refused(tmp_path, capsys):
    _good(tmp_path / "data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    rc = main(["prepare", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "no provenance.json" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert (
        main(
            [
                "prepare",
                "--data-dir",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "1",
                "--force",
            ]
        )
        == 0
    )
    (aside,) = tmp_path.glob("out.stale-*")
    assert (aside / "notes.txt").read_text() == "mine"


def test_second_writer_is_refused_naming_the_first(tmp_path):
    _good(tmp_path / "data")
    with provenance.lock(tmp_path / "out"):  # the lock of OUT guards OUT.partial too
        with pytest.raises(UserError, match=rf"in use by pid {os.getpid()}"):
            P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()


# --- bad signals, orphans, loops (findings 5, 6) --------------------------------------------------


def test_bad_signals_are_skipped_with_reasons_and_stats_json_is_strict(tmp_path):
    data = tmp_path / "data"
    _good(data)
    v = rand_val(n=1500, seed=20).astype(np.float64)
    v[0, 9] = 1e300  # overflows float32
    write_record(data / "cpsc", "A0900", v)
    write_record(data / "cpsc", "A0901", rand_val(n=1500, seed=21), gain="0/mV")
    write_record(data / "cpsc", "A0902", rand_val(n=1500, seed=22), gain="1e30/mV")
    big = rand_val(n=1500, seed=23).astype(np.int32)
    big[5, 5] = 100_000_000  # 1e5 mV
    write_record(data / "cpsc", "A0903", big)
    hea = write_record(data / "cpsc", "A0904", rand_val(n=1500, seed=24))
    hea.write_bytes(hea.read_bytes().replace(b"#Dx: 426783006", b"#Dx: 4267830\xff6"))
    P.prepare(data, tmp_path / "out", workers=1, progress=False)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False).set_index("record")["reason"]
    assert skipped.to_dict() == {
        "A0900": "implausible amplitude",
        "A0901": "invalid gain",
        "A0902": "invalid gain",
        "A0903": "implausible amplitude",
        "A0904": "unreadable header",
    }

    def no_nan(name):
        raise ValueError(f"bare {name} in stats.json")

    stats = json.loads((tmp_path / "out" / "stats.json").read_text(), parse_constant=no_nan)
    assert np.isfinite(stats["mean"]).all() and np.isfinite(stats["std"]).all()
    assert P.load_prepared(tmp_path / "out").index["record"].tolist() == ["A0000", "A0001", "A0002", "A0003"]


def test_an_orphan_signal_file_is_listed_as_missing_header(tmp_path):
    _good(tmp_path / "data")
    write_record(tmp_path / "data" / "cpsc", "A0050", rand_val(n=1500, seed=50))
    (tmp_path / "data" / "cpsc" / "A0050.hea").unlink()
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False)
    assert skipped[["record", "path", "reason"]].values.tolist() == [["A0050", "cpsc/A0050.mat", "missing header"]]
    stats = P.load_prepared(tmp_path / "out").stats
    assert (stats["n_headers"], stats["n_orphan_signal_files"], stats["n_records"], stats["n_skipped"]) == (4, 1, 4, 1)


class _Timeout(Exception):
    pass


def test_symlink_loops_visit_each_real_folder_once(tmp_path):
    data = tmp_path / "data"
    _good(data, n=1)
    write_record(tmp_path / "elsewhere" / "ptb", "S0001", rand_val(n=1500, seed=7))
    (data / "cpsc" / "up").symlink_to("..")  # two loops: 2**40 paths before ELOOP stops a naive walk
    (data / "cpsc" / "self").symlink_to(".")
    (data / "zcopy").symlink_to("cpsc")  # the same folder under a second name
    (data / "ptb").symlink_to(tmp_path / "elsewhere" / "ptb")  # a real symlinked source: followed

    def stop(*_):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(20)
    try:
        heas, orphans = P.walk_corpus(data)
    except _Timeout:
        pytest.fail("walking the data folder did not end within 20 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert heas == ["cpsc/A0000.hea", "ptb/S0001.hea"] and orphans == []


# --- disk full (finding 6) --------------------------------------------------------------------------


def test_file_size_limit_is_one_line_partial_files_removed_and_rerun_recovers(tmp_path):
    make_corpus(tmp_path / "data")
    P.prepare(tmp_path / "data", tmp_path / "ref", workers=1, chunk_size=3, progress=False)
    limit = (tmp_path / "ref" / "signals.npy").stat().st_size // 2  # the parts fit, signals.npy does not
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from ecgssl_nb.__main__ import main\n"
        f"sys.exit(main(['prepare', '--data-dir', {str(tmp_path / 'data')!r}, '--out', {str(tmp_path / 'out')!r},"
        " '--workers', '1', '--chunk-size', '3']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "signals.npy: file-size limit reached" in last and "Traceback" not in run.stderr
    stage = P.staging_dir(tmp_path / "out")
    assert not list(stage.rglob("*.tmp*")) and not (tmp_path / "out").exists()
    assert len(list((stage / ".parts").glob("chunk-*.npy"))) == 8  # finished parts kept
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=3, progress=False)
    assert _bytes(tmp_path / "out") == _bytes(tmp_path / "ref")


def test_disk_full_while_writing_the_index_names_it(tmp_path, monkeypatch):
    _good(tmp_path / "data")
    real_fsync = os.fsync

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".index.csv.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"index\.csv: no space left on device .*run the same command again"):
        P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    assert not list(P.staging_dir(tmp_path / "out").glob(".index.csv.tmp*"))
    monkeypatch.undo()
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    assert len(P.load_prepared(tmp_path / "out")) == 4


# --- load_prepared checks what it opens (finding 6) -----------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    make_corpus(root / "data", n_good=6)
    return P.prepare(root / "data", root / "out", workers=1, progress=False)


def _edit_index(folder: Path, edit) -> None:
    ix = pd.read_csv(folder / "index.csv", dtype=str, keep_default_na=False)
    edited = edit(ix)  # edits in place, or returns the edited frame
    ix = ix if edited is None else edited
    ix.to_csv(folder / "index.csv", index=False)


def _set(col, row, value):
    def edit(ix):
        ix.loc[row, col] = value

    return edit


TAMPER = {
    "no labels column": (
        lambda f: _edit_index(f, lambda ix: ix.drop(columns="labels")),
        r"index\.csv has no column 'labels'",
    ),
    "fold 99": (lambda f: _edit_index(f, _set("fold", 2, "99")), r"index\.csv: record .* has fold 99, outside 0\.\.9"),
    "unknown label code": (
        lambda f: _edit_index(f, _set("labels", 1, "164889003 123456")),
        r"index\.csv: record .* has label code '123456', not one of the 24 classes",
    ),
    "empty labels": (lambda f: _edit_index(f, _set("labels", 1, "")), r"index\.csv: record .* has no label"),
    "duplicate record name": (
        lambda f: _edit_index(f, lambda ix: ix.__setitem__("record", [ix["record"][0]] * len(ix))),
        r"index\.csv: record name .* appears more than once",
    ),
    "overlapping offsets": (
        lambda f: _edit_index(f, _set("offset", 3, "0")),
        r"index\.csv: record .* has offset 0 .*back to back",
    ),
    "row dropped": (
        lambda f: _edit_index(f, lambda ix: ix.drop(index=4)),
        r"index\.csv: \d+ rows, but stats\.json says n_records",
    ),
    "fold not an integer": (
        lambda f: _edit_index(f, _set("fold", 0, "x")),
        r"index\.csv: column 'fold' holds a value that is not an integer",
    ),
    "signals longer than the index": (
        lambda f: np.save(f / "signals.npy", np.zeros((99999, 12), np.float32)),
        r"signals\.npy: 99999 rows, but stats\.json says total_samples",
    ),
    "NaN in stats.json": (
        lambda f: (f / "stats.json").write_text(
            (f / "stats.json").read_text().replace('"mean": [', '"mean": [NaN, ', 1)
        ),
        r"stats\.json is not strict JSON",
    ),
    "no .complete.json": (lambda f: (f / ".complete.json").unlink(), r"not a finished prepared folder"),
    "no provenance.json": (
        lambda f: (f / "provenance.json").unlink(),
        r"provenance\.json is missing or not from `prepare`",
    ),
}


@pytest.mark.parametrize("fault", list(TAMPER))
def test_load_prepared_names_what_is_wrong(prepared, tmp_path, fault):
    folder = tmp_path / "copy"
    shutil.copytree(prepared, folder)
    P.load_prepared(folder)  # intact copy loads
    damage, message = TAMPER[fault]
    damage(folder)
    with pytest.raises(UserError, match=message) as info:
        P.load_prepared(folder)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_broken_and_looping_header_symlinks_are_skipped_not_a_traceback(tmp_path):
    _good(tmp_path / "data")
    (tmp_path / "data" / "cpsc" / "A0090.hea").symlink_to("nowhere.hea")
    (tmp_path / "data" / "cpsc" / "A0091.hea").symlink_to("A0091.hea")
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False).set_index("record")["reason"]
    assert skipped.to_dict() == {"A0090": "missing header", "A0091": "unreadable header"}
