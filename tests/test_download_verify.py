"""download verifies what it fetched (issue 18, cause 5): an archive is accepted only with a known
SHA-256 (`--sha256 FILE`; no sum is published for the Challenge's archives) or the loudly named
`--unverified-archives`; any fault of the gzip or tar stream fails the extraction, marks nothing
complete and keeps the archive; every remedy named in these errors is followed here and works.
Archives are built here and served from 127.0.0.1 (tests/test_download.py's Server)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest
from test_download import Server, sums_file, tar_gz

from ecgssl_nb import download as D
from ecgssl_nb.__main__ import main
from ecgssl_nb.errors import UserError

CPSC = D.ARCHIVES["CPSC"].file


def entries(n_files: int = 29) -> dict[str, bytes]:
    """`n_files` .hea/.mat-like members, the .mat ones of poorly compressible bytes."""
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n_files):
        ext = "hea" if i % 2 == 0 else "mat"
        data = b"A%04d 12 500 5000\n" % i * 20 if ext == "hea" else rng.integers(0, 4, 3000, dtype=np.uint8).tobytes()
        out[f"Training_WFDB/A{i // 2:04d}.{ext}"] = data
    return out


def flipped(data: bytes, at: float, n: int = 64) -> bytes:
    """`data` with `n` bytes inverted from the fraction `at` of its length on (same size)."""
    bad = bytearray(data)
    start = int(len(data) * at)
    for k in range(n):
        bad[start + k] ^= 0xFF
    return bytes(bad)


def damaged_header_in_sound_gzip(members: dict[str, bytes]) -> bytes:
    """A well-formed gzip stream (its CRC is right) around a tar whose 10th header is damaged:
    `tarfile` ends its listing there without a word."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        offsets = []
        for name, data in members.items():
            offsets.append(buf.tell())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    raw[offsets[9] + 148 : offsets[9] + 156] = b"garbage!"  # the header's checksum field
    return gzip.compress(bytes(raw))


GOOD = tar_gz(entries())
DAMAGED = {
    "64 bytes flipped mid-stream (gzip CRC)": flipped(GOOD, 0.5),
    "64 bytes flipped early (deflate error)": flipped(GOOD, 0.3),
    "gzip trailer cut (truncated stream)": GOOD[:-4],
    "gzip CRC byte changed": GOOD[:-8] + bytes([GOOD[-8] ^ 1]) + GOOD[-7:],
    "damaged tar header inside a sound gzip": damaged_header_in_sound_gzip(entries()),
}


@pytest.mark.parametrize("fault", list(DAMAGED))
def test_a_damaged_archive_fails_extraction_marks_nothing_and_is_kept(tmp_path, fault):
    archive = tmp_path / CPSC
    archive.write_bytes(DAMAGED[fault])
    with pytest.raises(UserError, match="nothing was extracted and .* kept: delete it and run again"):
        D.extract(archive, tmp_path / "data" / "CPSC")
    assert not (tmp_path / "data" / "CPSC").exists() and not (tmp_path / "data" / ".extract-CPSC").exists()
    assert archive.read_bytes() == DAMAGED[fault]


def test_a_flipped_archive_of_the_right_size_is_refused_by_its_sha256_and_a_rerun_fetches_it_afresh(tmp_path):
    data, sums = tmp_path / "data", sums_file(tmp_path, {CPSC: GOOD})
    bad = flipped(GOOD, 0.5)
    assert len(bad) == len(GOOD)
    files = {CPSC: bad}
    with Server(files) as srv:
        with pytest.raises(UserError, match="SHA-256 .* moved to .*bad .*run again to download it afresh"):
            D.download(data, "CPSC", base_url=srv.url, progress=False, sha256=sums)
        assert not (data / "CPSC").exists() and not (data / ".archives" / CPSC).exists()
        assert (data / ".archives" / (CPSC + ".bad")).read_bytes() == bad  # kept, never deleted
        files[CPSC] = GOOD  # the mirror is repaired: the remedy, followed, works
        D.download(data, "CPSC", base_url=srv.url, progress=False, sha256=sums)
    assert D.source_state(data, D.ARCHIVES["CPSC"]) == "extracted"
    assert len(list((data / "CPSC" / "Training_WFDB").iterdir())) == 29


def test_an_extraction_failure_keeps_the_archive_and_deleting_it_then_rerunning_works(tmp_path):
    data = tmp_path / "data"
    files = {CPSC: flipped(GOOD, 0.5)}
    with Server(files) as srv:
        with pytest.raises(UserError, match="delete it and run again"):
            D.download(data, "CPSC", base_url=srv.url, progress=False, unverified=True)
        assert (data / ".archives" / CPSC).exists() and not (data / "CPSC").exists()
        (data / ".archives" / CPSC).unlink()  # the remedy
        files[CPSC] = GOOD
        D.download(data, "CPSC", base_url=srv.url, progress=False, unverified=True)
    assert (data / "CPSC" / ".complete").exists()


def test_an_archive_with_no_known_sha256_is_refused_before_anything_is_downloaded(tmp_path, capsys):
    data = tmp_path / "data"
    with Server({CPSC: GOOD}) as srv:
        rc = main(["download", "--out", str(data), "--sources", "CPSC", "--base-url", srv.url])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert CPSC in err and "--sha256 FILE" in err and "--unverified-archives" in err
        assert srv.log == [] and not data.exists()
        # either remedy, followed, works
        sums = sums_file(tmp_path, {CPSC: GOOD})
        rc = main(["download", "--out", str(data), "--sources", "CPSC", "--base-url", srv.url, "--sha256", str(sums)])
        assert rc == 0 and (data / "CPSC" / ".complete").exists()
        other = tmp_path / "other"
        rc = main(
            ["download", "--out", str(other), "--sources", "CPSC", "--base-url", srv.url, "--unverified-archives"]
        )
        assert rc == 0 and (other / "CPSC" / ".complete").exists()
        assert "UNVERIFIED" in capsys.readouterr().err


def test_an_archive_already_downloaded_is_verified_before_it_is_extracted(tmp_path):
    data = tmp_path / "data"
    (data / ".archives").mkdir(parents=True)
    (data / ".archives" / CPSC).write_bytes(flipped(GOOD, 0.6))
    with pytest.raises(UserError, match="SHA-256"):
        D.download(
            data, "CPSC", base_url="http://127.0.0.1:9/", progress=False, sha256=sums_file(tmp_path, {CPSC: GOOD})
        )
    assert not (data / "CPSC").exists() and (data / ".archives" / (CPSC + ".bad")).exists()


def test_extracted_files_the_sums_file_lists_are_checked(tmp_path):
    members = entries(4)
    archive = tar_gz(members)
    right = {CPSC: archive, "training/cpsc_2018/g1/A0001.hea": members["Training_WFDB/A0001.hea"]}
    wrong = {CPSC: archive, "training/cpsc_2018/g1/A0001.hea": b"another header"}
    with Server({CPSC: archive}) as srv:
        with pytest.raises(UserError, match="extracted Training_WFDB/A0001.hea does not have the SHA-256"):
            D.download(tmp_path / "a", "CPSC", base_url=srv.url, progress=False, sha256=sums_file(tmp_path, wrong))
        assert not (tmp_path / "a" / "CPSC").exists() and (tmp_path / "a" / ".archives" / CPSC).exists()
        D.download(tmp_path / "b", "CPSC", base_url=srv.url, progress=False, sha256=sums_file(tmp_path, right))
    assert (tmp_path / "b" / "CPSC" / ".complete").exists()


def test_sha256_files_are_read_as_sha256sum_writes_them_and_a_bad_line_is_named(tmp_path, capsys):
    h = hashlib.sha256(b"x").hexdigest()
    path = tmp_path / "SHA256SUMS.txt"
    path.write_text(f"# sums\n\n{h.upper()}  training/g1/A0001.mat\n{'0' * 64} *{CPSC}\n")
    assert D.read_sums(path) == {"training/g1/A0001.mat": h, "A0001.mat": h, CPSC: "0" * 64}
    path.write_text(f"{h}  a.tar.gz\nnot a checksum line\n")
    with pytest.raises(UserError, match=r"SHA256SUMS.txt line 2: expected '<64 hex digits>  <file name>'"):
        D.read_sums(path)
    assert main(["download", "--out", str(tmp_path / "d"), "--sha256", str(path)]) == 2
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "d").exists()
