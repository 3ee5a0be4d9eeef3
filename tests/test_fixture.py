"""The synthetic fixture: Challenge 2020 on-disk format, plan of labels and sources, determinism,
and that the labels are visible in the signals (a cheap learnability check)."""

from __future__ import annotations

import csv
import struct
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb
from scipy.signal import find_peaks, resample_poly
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ecgssl_nb.data import fixture
from ecgssl_nb.__main__ import main
from ecgssl_nb.core import labels
from ecgssl_nb.core.errors import UserError

REAL = Path(__file__).parent / "data" / "ecg-samples" / "cinc2020"
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The default corpus (400 records, seed 0), written once for this module."""
    return fixture.make_fixture(tmp_path_factory.mktemp("fx") / "corpus")


@pytest.fixture(scope="module")
def plan() -> list:
    return fixture.plan_fixture(400, 0)


def _merged(rec) -> set:
    return set(labels.merge_codes(rec.dx))


def _parse_header(path: Path) -> dict:
    lines = path.read_text().splitlines()
    name, n_sig, fs, n, day, hms = lines[0].split()
    signals = [line.split() for line in lines[1:13]]
    comments = dict(line[1:].split(": ", 1) for line in lines[13:])
    return {
        "name": name,
        "n_sig": int(n_sig),
        "fs": int(fs),
        "n": int(n),
        "day": day,
        "time": hms,
        "signals": signals,
        "comments": comments,
        "n_lines": len(lines),
    }


# --- the plan: labels and sources ---------------------------------------------------------------


def test_every_class_appears_several_times_in_the_default_corpus(plan):
    counts = Counter(c for rec in plan for c in _merged(rec))
    assert set(counts) == set(labels.CLASSES)
    assert min(counts.values()) >= 10


def test_every_class_appears_once_the_corpus_has_24_records():
    counts = Counter(c for rec in fixture.plan_fixture(24, 5) for c in _merged(rec))
    assert set(counts) == set(labels.CLASSES)


def test_label_sets_are_clinically_coherent(plan):
    for rec in plan:
        m = _merged(rec)
        if not m:
            continue
        rhythms = m & set(fixture.RHYTHMS)
        assert len(rhythms) == 1, rec
        assert not {fixture.NSR, fixture.AF} <= m
        assert len(m & {fixture.CRBBB, fixture.IRBBB, fixture.LBBB, fixture.NSIVCB}) <= 1
        assert not {fixture.LAD, fixture.RAD} <= m and not {fixture.TAB, fixture.TINV} <= m
        if m & {fixture.PAC, fixture.IAVB, fixture.LPR}:
            assert rhythms <= set(fixture.SINUS), rec


def test_corpus_has_merged_codes_unscored_codes_unscored_only_records_and_one_duplicate(plan):
    written = Counter(c for rec in plan for c in set(rec.dx))
    for removed in (fixture.RBBB, fixture.SVPB, fixture.VPB):
        assert written[removed] >= 3
    scored = set(labels.SCORED_CODES)
    only_unscored = [r for r in plan if not set(r.dx) & scored]
    assert len(only_unscored) == 400 // 64
    assert all(set(r.dx) <= set(labels.UNSCORED_CODES) for r in only_unscored)
    mixed = [r for r in plan if set(r.dx) & scored and set(r.dx) - scored]
    assert len(mixed) >= 20
    duplicated = [r for r in plan if len(r.dx) != len(set(r.dx))]
    assert len(duplicated) == 1
    assert sum(r.age is None for r in plan) == 400 // 150


def test_sources_folders_prefixes_and_rates_are_as_documented(plan):
    # sampling rates of the real archives (book: The data)
    rates = {"CPSC": 500, "CPSC-Extra": 500, "INCART": 257, "PTB": 1000, "PTB-XL": 500, "Georgia": 500}
    assert {k: s.fs for k, s in fixture.FIXTURE_SOURCES.items()} == rates
    prefixes = {"CPSC": "A", "CPSC-Extra": "Q", "INCART": "I", "PTB": "S", "PTB-XL": "HR", "Georgia": "E"}
    assert {k: s.prefix for k, s in fixture.FIXTURE_SOURCES.items()} == prefixes
    counts = Counter(r.source for r in plan)
    for name, src in fixture.FIXTURE_SOURCES.items():
        assert abs(counts[name] - 400 * src.share) <= 1
        assert src.folder.split("/")[0] == name
    assert len({r.name for r in plan}) == 400
    for r in plan:
        src = fixture.FIXTURE_SOURCES[r.source]
        assert r.fs == src.fs
        assert r.name[len(src.prefix) :].isdigit() and len(r.name) == len(src.prefix) + src.digits
        assert r.name.startswith(src.prefix) and r.path == f"{src.folder}/{r.name}.hea"
        lo, hi = src.seconds
        assert round(lo * r.fs) <= r.n_samples <= round(hi * r.fs)


def test_plan_depends_only_on_seed_and_size():
    assert fixture.plan_fixture(50, 1) == fixture.plan_fixture(50, 1)
    assert fixture.plan_fixture(50, 1) != fixture.plan_fixture(50, 2)


# --- the files ------------------------------------------------------------------------------------


def test_corpus_holds_the_planned_records_and_a_manifest(corpus, plan):
    heads = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*.hea"))
    assert heads == sorted(r.path for r in plan)
    assert len(list(corpus.rglob("*.mat"))) == 400
    with open(corpus / fixture.MANIFEST, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["record"], r["path"], int(r["fs"]), r["dx"]) for r in rows] == [
        (r.name, r.path, r.fs, ",".join(r.dx)) for r in plan
    ]
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    assert size < 60e6


def test_headers_follow_the_challenge_2020_format_and_the_plan(corpus, plan):
    for rec in plan:
        h = _parse_header(corpus / rec.path)
        mat = scipy.io.loadmat(corpus / rec.path.replace(".hea", ".mat"))["val"]
        assert (h["name"], h["n_sig"], h["fs"], h["n"]) == (rec.name, 12, rec.fs, rec.n_samples)
        assert h["day"] == fixture.FIXTURE_SOURCES[rec.source].date and h["time"] == rec.time
        assert mat.shape == (12, rec.n_samples)
        assert [s[0] for s in h["signals"]] == [f"{rec.name}.mat"] * 12
        assert {tuple(s[1:5]) for s in h["signals"]} == {("16+24", "1000/mV", "16", "0")}
        assert [s[8] for s in h["signals"]] == LEADS
        assert [int(s[5]) for s in h["signals"]] == mat[:, 0].tolist()
        assert h["comments"]["Dx"] == ",".join(rec.dx)
        assert h["comments"]["Age"] == ("NaN" if rec.age is None else str(int(rec.age)))
        assert h["comments"]["Sex"] in ("Male", "Female")
        assert [h["comments"][k] for k in ("Rx", "Hx", "Sx")] == ["Unknown"] * 3
        assert h["n_lines"] == 19


def test_checksums_are_the_wfdb_16_bit_sums(corpus, plan):
    # definition, by hand: sum modulo 65536, read as a signed 16-bit number
    by_hand = fixture.wfdb_checksum(np.array([[32767, 1], [-32768, -1], [5, -7]]))
    np.testing.assert_array_equal(by_hand, [-32768, 32767, -2])
    # the same definition reproduces a real Challenge header
    real = scipy.io.loadmat(REAL / "A5432.mat")["val"]
    real_sums = [int(line.split()[6]) for line in (REAL / "A5432.hea").read_text().splitlines()[1:13]]
    assert fixture.wfdb_checksum(real).tolist() == real_sums
    for rec in plan[::7]:
        h = _parse_header(corpus / rec.path)
        mat = scipy.io.loadmat(corpus / rec.path.replace(".hea", ".mat"))["val"]
        sums = mat.astype(np.int64).sum(axis=1)
        assert [int(s[6]) for s in h["signals"]] == [int((v + 32768) % 65536 - 32768) for v in sums]


def test_mat_files_have_the_challenge_matlab_v4_layout(corpus, plan):
    # the real file: type 30 (int16, little-endian), 12 rows, N columns, real, name 'val\0'
    real = (REAL / "A5432.mat").read_bytes()
    assert struct.unpack("<5i", real[:20]) == (30, 12, 5000, 0, 4) and real[20:24] == b"val\x00"
    for rec in plan[::13]:
        raw = (corpus / rec.path.replace(".hea", ".mat")).read_bytes()
        assert struct.unpack("<5i", raw[:20]) == (30, 12, rec.n_samples, 0, 4)
        assert raw[20:24] == b"val\x00" and len(raw) == 24 + 2 * 12 * rec.n_samples
        val = scipy.io.loadmat(corpus / rec.path.replace(".hea", ".mat"))["val"]
        assert val.dtype == np.int16
        # format 16 at byte offset 24: samples interleaved lead by lead, as WFDB reads them
        np.testing.assert_array_equal(np.frombuffer(raw[24:], "<i2").reshape(-1, 12).T, val)


def test_every_record_reads_with_wfdb_and_agrees_with_loadmat(corpus, plan):
    for rec in plan:
        base = corpus / rec.path[: -len(".hea")]
        w = wfdb.rdrecord(str(base))
        val = scipy.io.loadmat(str(base) + ".mat")["val"]
        assert w.fs == rec.fs and w.sig_len == rec.n_samples and w.sig_name == LEADS
        assert w.units == ["mV"] * 12 and w.comments[2] == "Dx: " + ",".join(rec.dx)
        np.testing.assert_allclose(w.p_signal.T, val / 1000.0, atol=1e-9)


def test_limb_leads_obey_einthoven_and_goldberger_within_rounding(corpus, plan):
    worst = 0.0
    for rec in plan[::5]:
        v = scipy.io.loadmat(corpus / rec.path.replace(".hea", ".mat"))["val"].astype(float)
        i, ii, iii, avr, avl, avf = v[:6]
        for err in (iii - (ii - i), avr + (i + ii) / 2, avl - (i - iii) / 2, avf - (ii + iii) / 2):
            worst = max(worst, np.abs(err).max())
    assert worst <= 2.0  # ADC units (1 uV): only rounding


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    a = fixture.make_fixture(tmp_path / "a", 12, 3)
    b = fixture.make_fixture(tmp_path / "b", 12, 3)
    c = fixture.make_fixture(tmp_path / "c", 12, 4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mat"]) == 12
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    mats_a = sorted(p.read_bytes() for p in a.rglob("*.mat"))
    mats_c = sorted(p.read_bytes() for p in c.rglob("*.mat"))
    assert not set(mats_a) & set(mats_c)


def test_the_smallest_corpora_are_complete_and_readable(tmp_path):
    for n in (1, 2, 5):
        out = fixture.make_fixture(tmp_path / f"n{n}", n, 0)
        heads = sorted(out.rglob("*.hea"))
        assert len(heads) == n
        for h in heads:
            assert wfdb.rdrecord(str(h.with_suffix(""))).p_signal.shape[1] == 12


def test_rewriting_a_fixture_folder_replaces_its_records(tmp_path):
    out = fixture.make_fixture(tmp_path / "fx", 30, 0)
    fixture.make_fixture(out, 7, 1)
    assert len(list(out.rglob("*.hea"))) == 7 and len(list(out.rglob("*.mat"))) == 7


def test_bad_arguments_raise_user_errors_that_name_the_parameter(tmp_path):
    for n in (0, -3, 2.5, True, "10"):
        with pytest.raises(UserError, match="records"):
            fixture.make_fixture(tmp_path / "x", n)
    with pytest.raises(UserError, match="seed"):
        fixture.make_fixture(tmp_path / "x", 5, -1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        fixture.make_fixture(a_file, 5)
    with pytest.raises(UserError, match="not writable"):
        fixture.make_fixture(a_file / "below", 5)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        fixture.make_fixture(foreign, 5)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_cli_writes_the_corpus_and_reports_bad_input_on_one_line(tmp_path, capsys):
    assert main(["fixture", "--out", str(tmp_path / "cli"), "--records", "6", "--seed", "2"]) == 0
    assert "wrote 6 synthetic records" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").rglob("*.hea"))) == 6
    assert main(["fixture", "--out", str(tmp_path / "bad"), "--records", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "records" in err and "\n" not in err


# --- synth_ecg ----------------------------------------------------------------------------------


def test_synth_ecg_returns_12_leads_in_mv_at_the_requested_rate():
    x = fixture.synth_ecg([fixture.NSR], 257, 7.5, np.random.default_rng(0))
    assert x.shape == (12, round(257 * 7.5)) and x.dtype == np.float32
    i, ii, iii, avr, avl, avf = x[:6].astype(np.float64)
    np.testing.assert_allclose(iii, ii - i, atol=1e-5)
    np.testing.assert_allclose(avr, -(i + ii) / 2, atol=1e-5)
    np.testing.assert_allclose(avf, (ii + iii) / 2, atol=1e-5)
    assert 0.5 < np.ptp(ii) < 5.0  # a QRS of about a millivolt, not volts or microvolts


def test_synth_ecg_is_seeded_and_merged_or_unscored_codes_act_like_their_class():
    a = fixture.synth_ecg([fixture.RBBB], 500, 4, np.random.default_rng(9))
    b = fixture.synth_ecg([fixture.CRBBB], 500, 4, np.random.default_rng(9))
    c = fixture.synth_ecg([fixture.CRBBB, "428750005"], 500, 4, 9)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, c)
    assert not np.array_equal(b, fixture.synth_ecg([fixture.CRBBB], 500, 4, 10))


def test_synth_ecg_rejects_unknown_codes_and_bad_rates():
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="codes"):
        fixture.synth_ecg(["123"], 500, 1, rng)
    with pytest.raises(UserError, match="fs"):
        fixture.synth_ecg([fixture.NSR], 0, 1, rng)
    with pytest.raises(UserError, match="seconds"):
        fixture.synth_ecg([fixture.NSR], 500, -1, rng)
    with pytest.raises(UserError, match="rng"):
        fixture.synth_ecg([fixture.NSR], 500, 1, "seed")


def test_pacing_rhythm_shows_pacemaker_spikes():
    def steepest(codes):
        x = fixture.synth_ecg(codes, 500, 10, np.random.default_rng(3))
        return np.abs(np.diff(x, axis=1)).max()

    assert steepest([fixture.PACED]) > 1.5  # mV between two samples 2 ms apart
    assert steepest([fixture.NSR]) < 0.6


# --- learnability: simple hand features see the labels -------------------------------------------


def _features(val: np.ndarray, fs: int) -> tuple[float, float, float, np.ndarray]:
    """Median RR (s), RR coefficient of variation, QRS width (s) and the median beat (12, 100)
    at 100 Hz, from an R-peak detector on the summed absolute slope of the 12 leads."""
    q = Fraction(100, fs)
    x = resample_poly(val / 1000.0, q.numerator, q.denominator, axis=1)
    slope = np.convolve(np.abs(np.diff(x, axis=1)).sum(0), np.ones(5) / 5, "same")
    peaks, _ = find_peaks(slope, distance=30, height=0.4 * np.percentile(slope, 99))
    rr = np.diff(peaks) / 100.0
    peaks = peaks[(peaks > 40) & (peaks < x.shape[1] - 60)]
    beat = np.median(np.stack([x[:, p - 40 : p + 60] for p in peaks]), axis=0)
    beat -= np.median(beat[:, :10], axis=1, keepdims=True)
    env = np.abs(np.diff(beat, axis=1)).sum(0)
    return float(np.median(rr)), float(rr.std() / rr.mean()), float((env > 0.25 * env.max()).sum() / 100), beat


@pytest.fixture(scope="module")
def features(corpus, plan):
    rows = [_features(scipy.io.loadmat(corpus / r.path.replace(".hea", ".mat"))["val"], r.fs) for r in plan]
    y = np.stack([labels.encode(r.dx) for r in plan])
    return np.array([r[:3] for r in rows]), np.stack([r[3].ravel() for r in rows]), y


def test_heart_rate_follows_the_rhythm_labels(features):
    scalars, _, y = features
    rr = scalars[:, 0]
    col = labels.CLASS_INDEX
    stach, sb, nsr = (y[:, col[c]] == 1 for c in (fixture.STACH, fixture.SB, fixture.NSR))
    assert np.median(rr[stach]) < 0.6 < np.median(rr[nsr]) < 1.0 < np.median(rr[sb])
    assert roc_auc_score(np.r_[np.ones(sb.sum()), np.zeros(stach.sum())], np.r_[rr[sb], rr[stach]]) > 0.98


def test_af_is_irregular_and_lbbb_is_wide(features):
    scalars, _, y = features
    col = labels.CLASS_INDEX
    af = y[:, col[fixture.AF]] == 1
    assert roc_auc_score(af, scalars[:, 1]) > 0.85  # RR variability, AF against everything else
    lbbb = y[:, col[fixture.LBBB]] == 1
    plain = (y.sum(1) == 1) & (y[:, col[fixture.NSR]] == 1)
    widths = np.r_[scalars[lbbb, 2], scalars[plain, 2]]
    assert roc_auc_score(np.r_[np.ones(lbbb.sum()), np.zeros(plain.sum())], widths) > 0.9


def test_a_linear_model_on_the_median_beat_recognises_morphology_classes(features):
    _, beats, y = features
    train = np.arange(len(y)) % 4 != 0  # every 4th record held out
    mu, sd = beats[train].mean(0), beats[train].std(0) + 1e-6
    x = (beats - mu) / sd
    for code in (fixture.CRBBB, fixture.LBBB, fixture.NSIVCB, fixture.RAD, fixture.LQRSV, fixture.QAB, fixture.PACED):
        k = labels.CLASS_INDEX[code]
        clf = LogisticRegression(C=0.05, max_iter=2000).fit(x[train], y[train, k])
        auc = roc_auc_score(y[~train, k], clf.decision_function(x[~train]))
        assert auc > 0.85, (labels.abbreviation(code), auc)


# --- the full-size shape of the real data set (benchmarks) ------------------------------------------


def test_physionet2020_shape_has_the_real_source_counts_rates_and_lengths():
    sources = fixture.SHAPES["physionet2020"]
    counts = dict(zip(sources, fixture._allocate(43101, np.array([s.share for s in sources.values()]))))
    # paper Sec. III-A: CPSC 6,877, CPSC-Extra 3,453, INCART 74, PTB 516, PTB-XL 21,837, Georgia 10,344
    assert counts == {"CPSC": 6877, "CPSC-Extra": 3453, "INCART": 74, "PTB": 516, "PTB-XL": 21837, "Georgia": 10344}
    plan = fixture.plan_fixture(3000, 0, shape="physionet2020")  # the lengths, on a cheaper plan
    counts = Counter(r.source for r in plan)
    seconds = {s: np.array([r.n_samples / r.fs for r in plan if r.source == s]) for s in counts}
    rates = {s: {r.fs for r in plan if r.source == s} for s in counts}
    assert rates == {
        "CPSC": {500},
        "CPSC-Extra": {500},
        "INCART": {257},
        "PTB": {1000},
        "PTB-XL": {500},
        "Georgia": {500},
    }
    assert np.all(seconds["INCART"] == 1800.0)  # 30-minute Holter excerpts: 462,600 samples
    assert np.all(seconds["PTB-XL"] == 10.0) and np.all(seconds["Georgia"] == 10.0)
    assert seconds["PTB"].min() >= 38.0 and seconds["PTB"].max() <= 120.0 and seconds["PTB"].mean() > 60
    for s in ("CPSC", "CPSC-Extra"):
        assert seconds[s].min() >= 6.0 and seconds[s].max() <= 60.0 and 12.0 < seconds[s].mean() < 20.0
    assert max(s.digits for s in sources.values() if s.name in ("PTB-XL", "Georgia")) == 5  # 21,837 fits


def test_physionet2020_shape_at_a_fraction_keeps_the_shares_and_writes_readable_records(tmp_path):
    plan = fixture.plan_fixture(431, 0, shape="physionet2020")
    counts = Counter(r.source for r in plan)
    for name, real in fixture.RECORDS_2020.items():
        assert abs(counts[name] - 431 * real / 43101) <= 1.5, name  # every source at least once
    assert counts["INCART"] >= 1
    small = fixture.make_fixture(tmp_path / "fx", 40, 0, shape="physionet2020")
    incart = next(small.rglob("I0001.hea"))
    rec = wfdb.rdrecord(str(incart.with_suffix("")))
    assert rec.fs == 257 and rec.sig_len == 1800 * 257
    assert '"shape": "physionet2020"' in (small / fixture.MARKER).read_text()


def test_parallel_writing_gives_the_same_bytes_as_one_process(tmp_path):
    a = fixture.make_fixture(tmp_path / "a", 30, 1)
    b = fixture.make_fixture(tmp_path / "b", 30, 1, workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert "shape" not in (a / fixture.MARKER).read_text()  # the tiny fixture's marker is unchanged


def test_bad_shape_or_workers_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--shape 'real'"):
        fixture.make_fixture(tmp_path / "x", 10, 0, shape="real")
    with pytest.raises(UserError, match="--workers"):
        fixture.make_fixture(tmp_path / "y", 10, 0, workers=0)
