"""prepare: real and hand-made corpora -> memmap, index, skipped, stats and folds; resume after a
kill gives the same bytes; the CLI's argument errors; load_prepared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.signal
from test_records import rand_val, write_record

from ecgssl_nb.data import prepare as P
from ecgssl_nb.__main__ import main
from ecgssl_nb.core import labels as L
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.data.records import LEADS

SAMPLES = Path(__file__).parent / "data" / "ecg-samples"
OUTPUTS = ("signals.npy", "index.csv", "skipped.csv", "stats.json")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    P.prepare(SAMPLES, out, workers=1, chunk_size=16, progress=False)
    return out, P.load_prepared(out)


def test_every_real_header_is_indexed_or_skipped(real):
    out, prep = real
    headers = sorted(p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*.hea"))
    skipped = pd.read_csv(out / "skipped.csv", keep_default_na=False)
    assert sorted(prep.index["path"].tolist() + skipped["path"].tolist()) == headers
    assert prep.stats["n_headers"] == len(headers) == 208 == prep.stats["n_records"] + prep.stats["n_skipped"]


def test_real_skips_are_unscored_records_and_the_duplicate_pair(real):
    out, _ = real
    skipped = pd.read_csv(out / "skipped.csv", keep_default_na=False).set_index("record")
    assert skipped.loc["E07510", "reason"] == "duplicate signal"
    assert skipped.loc["E07510", "detail"] == "duplicate of E07509"  # identical .mat files, E07509 first
    for rec, row in skipped.iterrows():
        if row["reason"] == "no scored label":
            dx = P.read_header(SAMPLES / row["path"]).dx
            assert dx and not set(dx) & set(L.SCORED_CODES), rec


def test_real_signals_are_every_lead_fft_resampled_to_100hz(real):
    _, prep = real
    idx = prep.index.set_index("record")
    for rec in ("A5432", "E00009", "HR06000", "JS20000", "Q0010"):
        row = idx.loc[rec]
        hea = SAMPLES / row["path"]
        val = scipy.io.loadmat(hea.with_suffix(".mat"))["val"].astype(np.float64)
        gain = P.read_header(hea).gain[:, None]
        new_len = int(val.shape[1] * 100 / 500)
        assert row["length"] == new_len and row["n_samples"] == val.shape[1]
        expected = np.stack([scipy.signal.resample(val[i] / gain[i], new_len) for i in range(12)])
        got = prep.record(prep.index.index[prep.index["record"] == rec][0])
        assert got.shape == (12, new_len) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert len({got[i].tobytes() for i in range(12)}) == 12  # B1: twelve different leads


def test_real_index_offsets_are_back_to_back(real):
    _, prep = real
    ix = prep.index
    assert ix["offset"].iloc[0] == 0
    np.testing.assert_array_equal(ix["offset"].to_numpy()[1:], (ix["offset"] + ix["length"]).to_numpy()[:-1])
    assert prep.signals.shape == (int(ix["length"].sum()), 12) == (prep.stats["total_samples"], 12)
    assert isinstance(prep.signals, np.memmap) and prep.signals.dtype == np.float32


def test_real_labels_are_merged_and_codes_keep_pre_merge_scored_codes(real):
    _, prep = real
    for _, row in prep.index.iterrows():
        dx = row["dx"].split()
        assert row["codes"].split() == [c for c in dx if c in L.SCORED_CODES]
        assert row["labels"].split() == L.merge_codes(dx)
        assert row["labels"]  # every kept record has a scored label
    q = prep.index.set_index("record")
    rbbb = [r for r, row in q.iterrows() if "59118001" in row["codes"].split()]
    assert rbbb and all(
        "713427006" in q.loc[r, "labels"].split() and "59118001" not in q.loc[r, "labels"] for r in rbbb
    )
    assert prep.label_matrix().shape == (len(prep), 24) and prep.label_matrix().dtype == np.float32


def test_real_stats_are_averages_of_per_record_lead_stats(real):
    _, prep = real
    recs = [prep.record(i).astype(np.float64) for i in range(len(prep))]
    np.testing.assert_allclose(prep.mean, np.mean([r.mean(axis=1) for r in recs], axis=0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(prep.std, np.mean([r.std(axis=1) for r in recs], axis=0), rtol=1e-5)
    assert prep.mean.shape == prep.std.shape == (12,) and len(set(prep.std.tolist())) == 12
    s = prep.stats
    assert s["per_class"] == dict(zip(L.ABBREVIATIONS, prep.label_matrix().sum(axis=0).astype(int).tolist()))
    assert s["per_source"] == prep.index["source"].value_counts().to_dict()
    assert sum(s["per_skip_reason"].values()) == s["n_skipped"] and s["leads"] == list(LEADS)
    assert s["per_fold"] == np.bincount(prep.index["fold"], minlength=10).tolist()
    assert set(prep.index["fold"]) <= set(range(10))


def test_real_ages_and_sexes_survive(real):
    _, prep = real
    row = prep.index.set_index("record").loc["E00009"]
    assert row["age"] == 76.0 and row["sex"] == "Male" and row["fs"] == 500.0


# -- a hand-made corpus with every kind of bad record -------------------------------------------


def make_corpus(root: Path, n_good: int = 14) -> dict:
    """Good records in two sources plus one of each failure; returns {record: expected reason}."""
    rng = np.random.default_rng(0)
    scored = list(L.SCORED_CODES)
    for i in range(n_good):
        codes = ",".join(rng.choice(scored, size=int(rng.integers(1, 3)), replace=False))
        prefix, sub = ("A", "cpsc") if i % 2 else ("E", "georgia")
        write_record(root / sub, f"{prefix}{i:04d}", rand_val(n=1500 + 10 * i, seed=i), dx=f"#Dx: {codes}")
    write_record(root / "incart", "I0001", rand_val(n=2570, seed=50), fs="257", dx="#Dx: 426783006")
    write_record(root / "ptb", "S0001", rand_val(n=3000, seed=51), fs="1000", dx="#Dx: 426783006")
    expected = {}
    write_record(root / "cpsc", "A0900", rand_val(n=1245, seed=60), dx="#Dx: 426783006")
    expected["A0900"] = "too short"  # int(1245 * 100 / 500) = 249
    write_record(root / "cpsc", "A0901", rand_val(11, seed=61), leads=LEADS[:11])
    expected["A0901"] = "not 12 leads"
    v = rand_val(seed=62)
    v[0, 0] = -32768
    write_record(root / "cpsc", "A0902", v)
    expected["A0902"] = "NaN samples"
    write_record(root / "cpsc", "A0903", rand_val(seed=63))
    (root / "cpsc" / "A0903.mat").unlink()
    expected["A0903"] = "missing signal file"
    write_record(root / "cpsc", "A0904", rand_val(seed=64), dx="#Dx: 55827005")
    expected["A0904"] = "no scored label"
    (root / "cpsc" / "A0905.hea").write_text("nonsense\n")
    expected["A0905"] = "unreadable header"
    write_record(root / "georgia", "E0906", rand_val(n=1500, seed=0), dx="#Dx: 426783006")
    expected["E0906"] = "duplicate signal"  # same samples as E0000
    return expected


def test_bad_records_are_skipped_with_their_reason(tmp_path):
    expected = make_corpus(tmp_path / "data")
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=5, progress=False)
    prep = P.load_prepared(tmp_path / "out")
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False).set_index("record")
    assert skipped["reason"].to_dict() == expected
    assert skipped.loc["E0906", "detail"] == "duplicate of E0000"
    assert prep.stats["per_skip_reason"] == dict(sorted(pd.Series(expected).value_counts().items()))
    idx = prep.index.set_index("record")
    assert idx.loc["I0001", ["source", "fs", "length"]].tolist() == ["INCART", 257.0, 1000]
    assert idx.loc["S0001", ["source", "fs", "length"]].tolist() == ["PTB", 1000.0, 300]
    # sorted by (source in SOURCES order, record): CPSC, INCART, PTB, Georgia
    assert prep.index["source"].tolist() == sorted(prep.index["source"], key=P.SOURCES.index)
    for _, part in prep.index.groupby("source"):
        assert part["record"].tolist() == sorted(part["record"])


def test_a_second_record_of_a_kept_name_is_skipped(tmp_path):
    write_record(tmp_path / "data" / "cpsc", "A0001", rand_val(n=1500, seed=1), dx="#Dx: 426783006")
    write_record(tmp_path / "data" / "georgia", "A0001", rand_val(n=1500, seed=2), dx="#Dx: 426783006")
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=1, progress=False)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False)
    assert skipped[["path", "reason", "detail"]].values.tolist() == [
        ["georgia/A0001.hea", "duplicate record name", "another A0001 was kept"]
    ]
    assert P.load_prepared(tmp_path / "out").index["path"].tolist() == ["cpsc/A0001.hea"]


def test_hidden_folders_are_not_searched(tmp_path):
    write_record(tmp_path / "data" / "cpsc", "A0001", rand_val(n=1500), dx="#Dx: 426783006")
    write_record(tmp_path / "data" / ".extract-CPSC" / "WFDB", "A0002", rand_val(n=1500, seed=1))
    assert P.walk_corpus(tmp_path / "data")[0] == ["cpsc/A0001.hea"]


def _bytes(out: Path) -> dict:
    return {f: (out / f).read_bytes() for f in OUTPUTS}


def test_killed_run_resumes_only_missing_chunks_and_gives_identical_bytes(tmp_path, monkeypatch):
    make_corpus(tmp_path / "data")
    P.prepare(tmp_path / "data", tmp_path / "ref", workers=2, chunk_size=3, progress=False)  # parallel, uninterrupted

    real_chunk = P._process_chunk
    calls = []

    def dies_on_third(task):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the 'kill'
        calls.append(task[0])
        return real_chunk(task)

    monkeypatch.setattr(P, "_process_chunk", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=3, progress=False)
    parts = P.staging_dir(tmp_path / "out") / ".parts"
    assert sorted(p.name for p in parts.glob("chunk-*.json")) == ["chunk-00000.json", "chunk-00001.json"]
    assert not (tmp_path / "out").exists()  # nothing half-made where a reader looks

    redone = []
    monkeypatch.setattr(P, "_process_chunk", lambda task: (redone.append(task[0]), real_chunk(task))[1])
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=3, progress=False)
    n_chunks = -(-len(list((tmp_path / "data").rglob("*.hea"))) // 3)
    assert redone == list(range(2, n_chunks))
    assert _bytes(tmp_path / "out") == _bytes(tmp_path / "ref")
    assert not (tmp_path / "out" / ".parts").exists() and not P.staging_dir(tmp_path / "out").exists()

    redone.clear()  # a finished folder is left alone
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=3, progress=False)
    assert redone == []


def test_parts_from_a_different_input_are_discarded(tmp_path, monkeypatch):
    make_corpus(tmp_path / "data")
    monkeypatch.setattr(P, "_assemble", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=4, progress=False)
    monkeypatch.undo()
    write_record(tmp_path / "data" / "cpsc", "A0007b", rand_val(n=1500, seed=99), dx="#Dx: 164889003")
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, chunk_size=4, progress=False)
    P.prepare(tmp_path / "data", tmp_path / "ref", workers=1, chunk_size=4, progress=False)
    assert _bytes(tmp_path / "out") == _bytes(tmp_path / "ref")
    assert "A0007b" in P.load_prepared(tmp_path / "out").index["record"].tolist()


def test_folds_and_seed(tmp_path):
    make_corpus(tmp_path / "data")
    P.prepare(tmp_path / "data", tmp_path / "a", workers=1, n_folds=3, seed=0, progress=False)
    ix = P.load_prepared(tmp_path / "a").index
    assert set(ix["fold"]) == {0, 1, 2}
    np.testing.assert_array_equal(ix["fold"], P.assign_folds(ix, n_folds=3, seed=0, label_col="codes"))


# -- command line ---------------------------------------------------------------------------------


def _cli(capsys, *args) -> tuple[int, str]:
    rc = main(["prepare", *map(str, args)])
    return rc, capsys.readouterr().err


def test_cli_missing_data_dir(tmp_path, capsys):
    rc, err = _cli(capsys, "--data-dir", tmp_path / "nope", "--out", tmp_path / "out")
    assert rc == 2 and "--data-dir" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_cli_data_dir_without_headers(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    rc, err = _cli(capsys, "--data-dir", tmp_path / "empty", "--out", tmp_path / "out")
    assert rc == 2 and "no .hea" in err and "Traceback" not in err


def test_cli_out_not_a_writable_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc, err = _cli(capsys, "--data-dir", SAMPLES, "--out", tmp_path / "file")
    assert rc == 2 and "--out" in err and "not a folder" in err
    rc, err = _cli(capsys, "--data-dir", SAMPLES, "--out", tmp_path / "file" / "sub")
    assert rc == 2 and "--out" in err and "cannot be created" in err


@pytest.mark.parametrize("flag,value", [("--workers", "0"), ("--n-folds", "1"), ("--chunk-size", "0")])
def test_cli_bad_numbers(tmp_path, capsys, flag, value):
    rc, err = _cli(capsys, "--data-dir", SAMPLES, "--out", tmp_path / "out", flag, value)
    assert rc == 2 and flag in err and len(err.strip().splitlines()) == 1


def test_cli_unknown_flag_and_missing_required(tmp_path, capsys):
    rc, err = _cli(capsys, "--data-dir", SAMPLES, "--out", tmp_path / "o", "--bogus")
    assert rc == 2 and "--bogus" in err and len(err.strip().splitlines()) == 1
    rc, err = _cli(capsys, "--out", tmp_path / "o")
    assert rc == 2 and "--data-dir" in err


def test_cli_runs(tmp_path, capsys):
    make_corpus(tmp_path / "data", n_good=4)
    rc, err = _cli(capsys, "--data-dir", tmp_path / "data", "--out", tmp_path / "out", "--workers", "1")
    assert rc == 0 and "prepared 6 records" in err
    assert all((tmp_path / "out" / f).exists() for f in OUTPUTS)


def test_load_prepared_rejects_a_folder_that_is_not_prepared(tmp_path):
    with pytest.raises(UserError, match="not a prepared folder"):
        P.load_prepared(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "index.csv").write_text("record\n")
    with pytest.raises(UserError, match="signals.npy"):
        P.load_prepared(tmp_path / "half")


def test_load_prepared_rejects_an_index_past_the_signals(tmp_path):
    make_corpus(tmp_path / "data", n_good=4)
    P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    np.save(tmp_path / "out" / "signals.npy", np.zeros((10, 12), np.float32))
    with pytest.raises(UserError, match="past the end"):
        P.load_prepared(tmp_path / "out")


def test_resample_keeps_length_rule_and_passes_100hz_through():
    x = np.random.default_rng(0).normal(size=(12, 777)).astype(np.float32)
    y = P.resample_100hz(x, 257.0)
    assert y.shape == (int(777 * 100 / 257.0), 12) and y.dtype == np.float32
    np.testing.assert_array_equal(P.resample_100hz(x, 100.0), x.T)


def test_synthetic_fixture_prepares_as_its_manifest_says(tmp_path):
    fixture = pytest.importorskip("ecgssl_nb.data.fixture")
    data = fixture.make_fixture(tmp_path / "fx", n_records=160, seed=0)
    P.prepare(data, tmp_path / "out", workers=2, chunk_size=32, progress=False)
    prep = P.load_prepared(tmp_path / "out")
    manifest = pd.read_csv(data / "fixture_records.csv", dtype=str, keep_default_na=False).set_index("record")
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False).set_index("record")
    assert sorted(prep.index["record"].tolist() + skipped.index.tolist()) == sorted(manifest.index)
    unscored_only = {r for r, row in manifest.iterrows() if not set(row["dx"].split(",")) & set(L.SCORED_CODES)}
    assert set(skipped.index[skipped["reason"] == "no scored label"]) == unscored_only
    assert set(skipped["reason"]) <= {"no scored label", "duplicate signal"}
    for rec, row in prep.index.set_index("record").iterrows():
        m = manifest.loc[rec]
        assert (row["source"], row["path"], int(row["n_samples"])) == (m["source"], m["path"], int(m["n_samples"]))
        assert row["dx"].split() == list(dict.fromkeys(m["dx"].split(",")))
        assert row["length"] == int(int(m["n_samples"]) * 100 / float(m["fs"]))
    assert set(prep.index["source"]) == set(P.SOURCES[:6])


def test_chunks_respect_the_record_count_and_the_byte_budget():
    rels = [f"r{i}" for i in range(10)]
    sizes = [10, 10, 10, 50, 10, 200, 10, 10, 10, 10]
    chunks = P.make_chunks(rels, sizes, chunk_size=4, chunk_bytes=60)
    assert [c for c in chunks] == [["r0", "r1", "r2"], ["r3", "r4"], ["r5"], ["r6", "r7", "r8", "r9"]]
    assert sum(chunks, []) == rels
    assert P.make_chunks(rels, [0] * 10, chunk_size=3) == [rels[0:3], rels[3:6], rels[6:9], rels[9:]]


def test_a_corpus_with_nothing_to_keep_is_an_error_that_keeps_the_report(tmp_path):
    for i in range(3):
        write_record(tmp_path / "data", f"A000{i}", rand_val(n=1500, seed=i), dx="#Dx: 55827005")
    with pytest.raises(
        UserError, match=r"no record kept: all 3 headers were skipped \(no scored label: 3\); see .*skipped.csv"
    ):
        P.prepare(tmp_path / "data", tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()
    report = pd.read_csv(P.staging_dir(tmp_path / "out") / "skipped.csv", keep_default_na=False)
    assert report["reason"].tolist() == ["no scored label"] * 3
