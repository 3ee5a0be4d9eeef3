"""records: the Challenge header/.mat reader against scipy.io.loadmat and wfdb on real records,
every real header quirk, and the stable RecordError reasons on corrupt input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecgssl_nb.core.errors import RecordError
from ecgssl_nb.data.records import LEADS, SOURCES, read_header, read_mat_val, read_record, source_of

SAMPLES = Path(__file__).parent / "data" / "ecg-samples"
REAL = sorted(SAMPLES.glob("*/*.hea"))


def write_record(
    folder: Path,
    name: str,
    val: np.ndarray,
    *,
    leads=LEADS,
    gain: str = "1000/mV",
    fmt: str = "16+24",
    fs: str = "500",
    first_name: str | None = None,
    dx: str = "#Dx: 426783006",
    age: str = "50",
    sex: str = "Male",
    mat_format: str = "4",
    n_samples: int | None = None,
) -> Path:
    """A record in the Challenge on-disk format (header + MATLAB `val`)."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format=mat_format)
    lines = [f"{first_name or name} {len(leads)} {fs} {n_samples if n_samples is not None else val.shape[1]}"]
    for i, lead in enumerate(leads):
        lines.append(f"{name}.mat {fmt} {gain} 16 0 {int(val[i % val.shape[0], 0])} 0 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}", dx, "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.hea"


def rand_val(n_leads=12, n=600, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, size=(n_leads, n)).astype(np.int16)


def test_real_samples_cover_both_folders():
    assert {p.parent.name for p in REAL} == {"cinc2020", "cinc2021", "cinc2021-more"}
    assert len(REAL) == 208  # 30 + 51 + 127 (tests/data/ecg-samples/README.md)


@pytest.mark.parametrize("hea", REAL, ids=[p.stem for p in REAL])
def test_every_real_record_equals_loadmat_minus_baseline_over_gain(hea):
    rec = read_record(hea)
    val = scipy.io.loadmat(hea.with_suffix(".mat"))["val"].astype(np.float64)
    # gain and baseline straight from the text: field 3 of each signal line, e.g. 1000.0(0)/mv
    sig_lines = [ln.split() for ln in hea.read_text().splitlines()[1:13]]
    gains = np.array([float(s[2].split("/")[0].split("(")[0]) for s in sig_lines])
    base = np.array([float(s[2].split("(")[1].split(")")[0]) if "(" in s[2] else float(s[4]) for s in sig_lines])
    assert [s[8] for s in sig_lines] == list(LEADS)  # the real headers are already in standard order
    expected = (val - base[:, None]) / gains[:, None]
    assert rec.signal.dtype == np.float32 and rec.signal.shape == (12, val.shape[1])
    np.testing.assert_allclose(rec.signal, expected, rtol=1e-6, atol=1e-7)
    assert rec.name == hea.stem and rec.fs == 500.0 and rec.path == hea
    assert rec.source in SOURCES and rec.source != "unknown"
    assert all(isinstance(c, str) and c.isdigit() for c in rec.dx) and len(rec.dx) == len(set(rec.dx))


@pytest.mark.parametrize(
    "stem", ["cinc2020/E00009", "cinc2020/HR00599", "cinc2020/A5432", "cinc2021/HR06000", "cinc2021/JS20000"]
)
def test_real_records_agree_with_wfdb_rdrecord(stem, tmp_path):
    wfdb = pytest.importorskip("wfdb")
    src = SAMPLES / f"{stem}.hea"
    name = src.stem
    lines = src.read_text().splitlines()
    first = lines[0].split()
    first[0] = first[0].removesuffix(".mat")  # wfdb rejects 'E00009.mat' as a record name
    (tmp_path / f"{name}.hea").write_text("\n".join([" ".join(first)] + lines[1:]) + "\n")
    shutil.copy(src.with_suffix(".mat"), tmp_path / f"{name}.mat")
    ref = wfdb.rdrecord(str(tmp_path / name))
    rec = read_record(src)
    assert list(ref.sig_name) == list(LEADS)
    np.testing.assert_allclose(rec.signal, ref.p_signal.T, rtol=1e-6, atol=1e-6)
    assert rec.fs == ref.fs


def test_quirk_first_line_names_mat_file():
    hea = SAMPLES / "cinc2020" / "E00009.hea"
    assert hea.read_text().split()[0] == "E00009.mat"
    h = read_header(hea)
    assert h.name == "E00009" and h.signal_file == "E00009.mat"


def test_quirk_gain_4880_and_200_and_decimal_with_baseline_and_lowercase_unit():
    assert read_header(SAMPLES / "cinc2020" / "E00009.hea").gain.tolist() == [4880.0] * 12
    assert read_header(SAMPLES / "cinc2020" / "HR00599.hea").gain.tolist() == [200.0] * 12
    h = read_header(SAMPLES / "cinc2021" / "HR06000.hea")  # '16x1+24 1000.0(0)/mv'
    assert h.gain.tolist() == [1000.0] * 12 and h.baseline.tolist() == [0.0] * 12
    assert read_record(h.path).signal.shape == (12, h.n_samples)  # format 16x1+24 is read


def test_quirk_dx_with_and_without_space_and_age_sex():
    h20 = read_header(SAMPLES / "cinc2020" / "E00009.hea")  # '#Dx: 428750005,39732003,427084000'
    assert h20.dx == ("428750005", "39732003", "427084000") and h20.age == 76.0 and h20.sex == "Male"
    h21 = read_header(SAMPLES / "cinc2021" / "HR06000.hea")  # '# Dx: 164934002,426783006'
    assert h21.dx == ("164934002", "426783006") and h21.age == 59.0 and h21.sex == "Female"


def test_quirk_duplicate_code_kept_once_in_header_order():
    hea = SAMPLES / "cinc2020" / "E00015.hea"
    raw = [c.strip() for ln in hea.read_text().splitlines() if "Dx" in ln for c in ln.split(":")[1].split(",")]
    assert len(raw) > len(set(raw))  # the real header repeats 284470004
    assert read_record(hea).dx == list(dict.fromkeys(raw))


def test_unscored_codes_are_kept_in_dx(tmp_path):
    hea = write_record(tmp_path, "A0001", rand_val(), dx="#Dx: 55827005,426783006,999999999")
    assert read_record(hea).dx == ["55827005", "426783006", "999999999"]


@pytest.mark.parametrize("age,expected", [("NaN", None), ("Unknown", None), ("", None), ("63", 63.0), ("0.5", 0.5)])
def test_age_missing_values_become_none(tmp_path, age, expected):
    hea = write_record(tmp_path, "A0001", rand_val(), age=age)
    assert read_record(hea).age == expected


@pytest.mark.parametrize("sex,expected", [("Male", "Male"), ("F", "Female"), ("Unknown", None), ("NaN", None)])
def test_sex_normalised(tmp_path, sex, expected):
    assert read_record(write_record(tmp_path, "A0001", rand_val(), sex=sex)).sex == expected


def test_leads_are_reordered_by_header_names(tmp_path):
    val = rand_val()
    perm = np.random.default_rng(1).permutation(12)
    leads = [LEADS[i] for i in perm]  # header row j holds standard lead perm[j]
    hea = write_record(tmp_path, "A0001", val, leads=[name.upper() for name in leads])
    rec = read_record(hea)
    for j, std_lead in enumerate(perm):
        np.testing.assert_allclose(rec.signal[std_lead], val[j] / 1000.0, rtol=1e-7, atol=0)


def test_baseline_in_brackets_is_subtracted_and_uv_unit_scaled(tmp_path):
    val = rand_val()
    rec = read_record(write_record(tmp_path, "A0001", val, gain="2.5(100)/uV"))
    # 2.5 units per uV = 2500 units per mV
    np.testing.assert_allclose(rec.signal, (val.astype(np.float64) - 100) / 2500.0, rtol=1e-6)


def test_v5_mat_file_reads_like_v4(tmp_path):
    val = rand_val()
    a = read_record(write_record(tmp_path / "a", "A0001", val, mat_format="4")).signal
    b = read_record(write_record(tmp_path / "b", "A0001", val, mat_format="5")).signal
    np.testing.assert_array_equal(a, b)
    assert read_mat_val(tmp_path / "a" / "A0001.mat").dtype == np.int16


def _reason(hea) -> str:
    with pytest.raises(RecordError) as info:
        read_record(hea)
    return info.value.reason


def test_missing_signal_file(tmp_path):
    hea = write_record(tmp_path, "A0001", rand_val())
    (tmp_path / "A0001.mat").unlink()
    assert _reason(hea) == "missing signal file"


def test_missing_header(tmp_path):
    assert _reason(tmp_path / "nothere.hea") == "missing header"


def test_truncated_signal_file(tmp_path):
    hea = write_record(tmp_path, "A0001", rand_val())
    mat = tmp_path / "A0001.mat"
    mat.write_bytes(mat.read_bytes()[:-100])
    assert _reason(hea) == "truncated signal file"
    mat.write_bytes(b"\x00" * 7)
    assert _reason(hea) == "truncated signal file"


@pytest.mark.parametrize(
    "text",
    ["", "garbage\n", "A0001 twelve 500 5000\n", "A0001 12 500 5000\nA0001.mat 16+24 1000/mV 16 0 0 0 0 I\n"],
    ids=["empty", "one-word", "non-numeric", "too-few-signal-lines"],
)
def test_unreadable_header(tmp_path, text):
    (tmp_path / "A0001.hea").write_text(text)
    assert _reason(tmp_path / "A0001.hea") == "unreadable header"


def test_eleven_leads_is_not_12_leads(tmp_path):
    assert _reason(write_record(tmp_path, "A0001", rand_val(11), leads=LEADS[:11])) == "not 12 leads"


def test_twelve_leads_with_a_duplicate_name_is_not_12_leads(tmp_path):
    with pytest.raises(RecordError) as info:
        read_record(write_record(tmp_path, "A0001", rand_val(), leads=LEADS[:11] + ("V5",)))
    assert info.value.reason == "not 12 leads" and "V6" in info.value.detail


def test_missing_sample_marker_is_nan_samples(tmp_path):
    val = rand_val()
    val[3, 17] = -32768  # WFDB's 'no sample' value for format 16
    assert _reason(write_record(tmp_path, "A0001", val)) == "NaN samples"


def test_float_nan_is_nan_samples(tmp_path):
    val = rand_val().astype(np.float64)
    val[0, 5] = np.nan
    assert _reason(write_record(tmp_path, "A0001", val, mat_format="5")) == "NaN samples"


def test_header_length_disagreeing_with_mat_is_length_mismatch(tmp_path):
    assert _reason(write_record(tmp_path, "A0001", rand_val(), n_samples=700)) == "length mismatch"


def test_format_212_is_unsupported(tmp_path):
    assert _reason(write_record(tmp_path, "A0001", rand_val(), fmt="212")) == "unsupported format"


def test_unknown_unit_is_unsupported(tmp_path):
    assert _reason(write_record(tmp_path, "A0001", rand_val(), gain="1000/mmHg")) == "unsupported unit"


@pytest.mark.parametrize("gain", ["1000(1.2.3)/mV", "1.2.3/mV", "1000(0)(0)/mV"])
def test_gain_or_baseline_that_is_not_a_number_is_unreadable_header(tmp_path, gain):
    assert _reason(write_record(tmp_path, "A0001", rand_val(), gain=gain)) == "unreadable header"


def test_record_error_names_the_file(tmp_path):
    hea = write_record(tmp_path, "A0001", rand_val(11), leads=LEADS[:11])
    with pytest.raises(RecordError) as info:
        read_record(hea)
    assert str(hea) in str(info.value)


@pytest.mark.parametrize(
    "name,path,expected",
    [
        ("A0001", None, "CPSC"),
        ("Q0048", None, "CPSC-Extra"),
        ("I0001", None, "INCART"),
        ("S0001", None, "PTB"),
        ("HR00001", None, "PTB-XL"),
        ("E00001", None, "Georgia"),
        ("JS00001", None, "Chapman-Shaoxing"),
        ("JS10646", None, "Chapman-Shaoxing"),
        ("JS10647", None, "Ningbo"),
        ("JS20000", "x/ningbo/g1/JS20000.hea", "Ningbo"),
        ("JS20000", "x/chapman_shaoxing/g1/JS20000.hea", "Chapman-Shaoxing"),
        ("rec1", "data/georgia/g1/rec1.hea", "Georgia"),
        ("rec1", "data/PTB-XL/rec1.hea", "PTB-XL"),
        ("rec1", "data/WFDB/rec1.hea", "unknown"),
        ("E00009.mat", None, "Georgia"),
    ],
)
def test_source_from_prefix_then_folder(name, path, expected):
    assert source_of(name, path) == expected


def test_read_record_raw_returns_the_stored_samples_as_n_by_leads():
    from ecgssl_nb.data.records import read_record_raw

    hea = SAMPLES / "cinc2021" / "JS00666.hea"
    rec, raw = read_record_raw(hea)
    val = scipy.io.loadmat(hea.with_suffix(".mat"))["val"]
    assert raw.dtype == np.int16 and raw.shape == (val.shape[1], 12)
    np.testing.assert_array_equal(raw, val.T)
    np.testing.assert_array_equal(rec.signal, read_record(hea).signal)


# -- signals checked after conversion (issue 8, finding 5) ---------------------------------------


def test_float_value_overflowing_float32_is_implausible_amplitude(tmp_path):
    val = rand_val().astype(np.float64)
    val[2, 40] = 1e300  # finite in the .mat, inf once converted to float32
    hea = write_record(tmp_path, "A0001", val)
    with pytest.raises(RecordError) as info:
        read_record(hea)
    assert info.value.reason == "implausible amplitude" and "lead II" in info.value.detail


def test_int32_signal_of_1e5_mv_is_implausible_amplitude(tmp_path):
    val = rand_val().astype(np.int32)
    val[7, 3] = 100_000_000  # 1e5 mV at 1000 units/mV
    assert _reason(write_record(tmp_path, "A0001", val)) == "implausible amplitude"


@pytest.mark.parametrize("peak,ok", [(4990, True), (5010, False)])
def test_amplitude_bound_is_50_mv(tmp_path, peak, ok):
    val = rand_val()
    val[0, 100] = peak  # at 100 units/mV: 49.9 mV is kept, 50.1 mV is not
    hea = write_record(tmp_path, "A0001", val, gain="100/mV")
    if ok:
        assert np.abs(read_record(hea).signal).max() == pytest.approx(49.9)
    else:
        assert _reason(hea) == "implausible amplitude"


def test_gain_zero_is_invalid_not_read_as_200(tmp_path):
    with pytest.raises(RecordError) as info:
        read_record(write_record(tmp_path, "A0001", rand_val(), gain="0/mV"))
    assert info.value.reason == "invalid gain" and "uncalibrated" in info.value.detail


@pytest.mark.parametrize("gain", ["1e30/mV", "-1000/mV", "1e400/mV", "0.5/mV", "2e5/mV", "0.0001/uV"])
def test_absurd_gains_are_invalid_gain(tmp_path, gain):
    assert _reason(write_record(tmp_path, "A0001", rand_val(), gain=gain)) == "invalid gain"


def test_non_utf8_header_bytes_are_unreadable_header_not_a_mangled_code(tmp_path):
    hea = write_record(tmp_path, "A0001", rand_val(), dx="#Dx: 426783006")
    hea.write_bytes(hea.read_bytes().replace(b"#Dx: 426783006", b"#Dx: 42678\xe9006"))
    with pytest.raises(RecordError) as info:
        read_header(hea)
    # record line, 12 signal lines, age, sex, Dx
    assert info.value.reason == "unreadable header" and "not UTF-8 on line 16" in info.value.detail
