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
from pathlib import Path

import numpy as np
import pytest
from test_download import Server, sums_file, tar_gz

from ecgssl_nb.data import download as D
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.data.prepare import load_prepared, prepare

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
            D.download_archives(data, "CPSC", base_url=srv.url, progress=False, sha256=sums)
        assert not (data / "CPSC").exists() and not (data / ".archives" / CPSC).exists()
        assert (data / ".archives" / (CPSC + ".bad")).read_bytes() == bad  # kept, never deleted
        files[CPSC] = GOOD  # the mirror is repaired: the remedy, followed, works
        D.download_archives(data, "CPSC", base_url=srv.url, progress=False, sha256=sums)
    assert D.source_state(data, D.ARCHIVES["CPSC"]) == "extracted"
    assert len(list((data / "CPSC" / "Training_WFDB").iterdir())) == 29


def test_an_extraction_failure_keeps_the_archive_and_deleting_it_then_rerunning_works(tmp_path):
    data = tmp_path / "data"
    files = {CPSC: flipped(GOOD, 0.5)}
    with Server(files) as srv:
        with pytest.raises(UserError, match="delete it and run again"):
            D.download_archives(data, "CPSC", base_url=srv.url, progress=False, unverified=True)
        assert (data / ".archives" / CPSC).exists() and not (data / "CPSC").exists()
        (data / ".archives" / CPSC).unlink()  # the remedy
        files[CPSC] = GOOD
        D.download_archives(data, "CPSC", base_url=srv.url, progress=False, unverified=True)
    assert (data / "CPSC" / ".complete").exists()


def test_an_archive_with_no_known_sha256_is_refused_before_anything_is_downloaded(tmp_path, capsys):
    data = tmp_path / "data"
    with Server({CPSC: GOOD}) as srv:
        rc = main(["download", "--from", "bucket", "--out", str(data), "--sources", "CPSC", "--base-url", srv.url])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert CPSC in err and "--sha256 FILE" in err and "--unverified-archives" in err
        assert srv.log == [] and not data.exists()
        # either remedy, followed, works
        sums = sums_file(tmp_path, {CPSC: GOOD})
        rc = main(
            [
                "download",
                "--from",
                "bucket",
                "--out",
                str(data),
                "--sources",
                "CPSC",
                "--base-url",
                srv.url,
                "--sha256",
                str(sums),
            ]
        )
        assert rc == 0 and (data / "CPSC" / ".complete").exists()
        other = tmp_path / "other"
        rc = main(
            [
                "download",
                "--from",
                "bucket",
                "--out",
                str(other),
                "--sources",
                "CPSC",
                "--base-url",
                srv.url,
                "--unverified-archives",
            ]
        )
        assert rc == 0 and (other / "CPSC" / ".complete").exists()
        assert "UNVERIFIED" in capsys.readouterr().err


def test_an_archive_already_downloaded_is_verified_before_it_is_extracted(tmp_path):
    data = tmp_path / "data"
    (data / ".archives").mkdir(parents=True)
    (data / ".archives" / CPSC).write_bytes(flipped(GOOD, 0.6))
    with pytest.raises(UserError, match="SHA-256"):
        D.download_archives(
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
            D.download_archives(
                tmp_path / "a", "CPSC", base_url=srv.url, progress=False, sha256=sums_file(tmp_path, wrong)
            )
        assert not (tmp_path / "a" / "CPSC").exists() and (tmp_path / "a" / ".archives" / CPSC).exists()
        D.download_archives(tmp_path / "b", "CPSC", base_url=srv.url, progress=False, sha256=sums_file(tmp_path, right))
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


# --- the default origin: PhysioNet's loose files, each checked against its SHA256SUMS.txt ----------

SAMPLES = Path(__file__).parent / "data" / "ecg-samples" / "cinc2020"
# A fake PhysioNet challenge-2020/1.0.2 tree: {path below the version's root: the real sample record}.
TREE_RECORDS = {
    "training/cpsc_2018/g1/A5432": "A5432",
    "training/cpsc_2018_extra/g1/Q0001": "Q0001",
    "training/cpsc_2018_extra/g1/Q0010": "Q0010",
    "training/georgia/g1/E00009": "E00009",
    "training/georgia/g2/E00015": "E00015",
    "training/ptb-xl/g1/HR00599": "HR00599",
}


def physionet_tree(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The served files, SHA256SUMS.txt included (as PhysioNet writes it: '<sha256> <path>', one
    space, every file of the version but itself), with a few files that are not records."""
    files = {
        f"{path}.{ext}": (SAMPLES / f"{name}.{ext}").read_bytes()
        for path, name in TREE_RECORDS.items()
        for ext in ("hea", "mat")
    }
    files |= {"LICENSE.txt": b"ODC-BY\n", "training/georgia/g1/RECORDS": b"E00009\n", **(extra or {})}
    files["SHA256SUMS.txt"] = "".join(
        f"{hashlib.sha256(data).hexdigest()} {path}\n" for path, data in sorted(files.items())
    ).encode()
    return files


def requested(srv) -> list[str]:
    return [name for name, _, _ in srv.log]


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(D, "RETRY_BACKOFF_S", 0.0)


def test_physionets_sums_file_is_read_as_physionet_writes_it(tmp_path):
    h = hashlib.sha256(b"x").hexdigest()
    text = f"{h} training/cpsc_2018/g1/A0001.hea\n{h} LICENSE.txt\n"
    assert D.parse_sums(text, "SHA256SUMS.txt") == {"training/cpsc_2018/g1/A0001.hea": h, "LICENSE.txt": h}
    (tmp_path / "SHA256SUMS.txt").write_text(text)
    assert D.read_sums(tmp_path / "SHA256SUMS.txt")["A0001.hea"] == h


def test_the_plain_command_downloads_from_physionet_verifies_every_file_and_prepare_reads_it(tmp_path, capsys):
    files = physionet_tree()
    data = tmp_path / "data"
    with Server(files) as srv:
        rc = main(["download", "--out", str(data), "--sources", "all", "--base-url", srv.url])
        assert rc == 2 and "lists no .hea/.mat file under training/st_petersburg_incart/ for INCART" in (
            capsys.readouterr().err
        )  # the fake tree has no INCART nor PTB: said, nothing fetched but the list
        assert requested(srv) == ["SHA256SUMS.txt"]
        argv = ["download", "--out", str(data), "--sources", "CPSC,CPSC-Extra,Georgia,PTB-XL", "--base-url", srv.url]
        assert main(argv) == 0
        records = [n for n in requested(srv) if n.endswith((".hea", ".mat"))]
        assert sorted(records) == sorted(f for f in files if f.startswith("training/") and f.endswith((".hea", ".mat")))
        assert "LICENSE.txt" not in requested(srv) and "training/georgia/g1/RECORDS" not in requested(srv)
        n = len(srv.log)
        assert main(argv) == 0 and len(srv.log) == n  # finished sources: nothing fetched, not even the list
    assert sorted(p.name for p in data.iterdir()) == [".physionet", "CPSC", "CPSC-Extra", "Georgia", "PTB-XL"]
    assert (data / "Georgia" / "g2" / "E00015.mat").read_bytes() == files["training/georgia/g2/E00015.mat"]
    assert all((data / s / ".complete").exists() for s in ("CPSC", "CPSC-Extra", "Georgia", "PTB-XL"))
    assert sorted(p.name for p in (data / ".physionet").iterdir()) == ["SHA256SUMS.txt"]
    prepare(data, tmp_path / "prep", workers=1, progress=False)
    ix = load_prepared(tmp_path / "prep").index
    assert ix.groupby("source")["record"].count().to_dict() == {"CPSC": 1, "CPSC-Extra": 2, "Georgia": 2, "PTB-XL": 1}


def test_a_file_that_differs_from_its_listed_sum_is_refused_in_one_line_and_a_rerun_after_the_fix_completes(
    tmp_path, capsys, no_backoff
):
    files = physionet_tree()
    good = files["training/georgia/g2/E00015.mat"]
    files["training/georgia/g2/E00015.mat"] = flipped(good, 0.5)  # same size, 64 bytes flipped
    data = tmp_path / "data"
    argv = ["download", "--out", str(data), "--sources", "Georgia,PTB-XL", "--base-url", "URL"]
    with Server(files) as srv:
        argv[-1] = srv.url
        assert main(argv) == 2
        (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert "Georgia: 1 of 4 files not verified" in err  # the error, on one line (progress aside)
        assert "training/georgia/g2/E00015.mat: SHA-256" in err and "run the same command again" in err
        assert requested(srv).count("training/georgia/g2/E00015.mat") == 3  # tried three times
        assert not (data / "Georgia").exists()  # not marked complete, not where prepare looks
        assert (data / "PTB-XL" / ".complete").exists()  # the sound source is finished
        assert (data / ".physionet" / "Georgia" / "g1" / "E00009.mat").exists()  # verified files kept
        assert (data / ".physionet" / "rejected" / "Georgia" / "g2" / "E00015.mat").read_bytes() != good
        files["training/georgia/g2/E00015.mat"] = good  # PhysioNet (or the link) is fixed: the remedy
        n = len(srv.log)
        assert main(argv) == 0
        assert requested(srv)[n:] == ["SHA256SUMS.txt", "training/georgia/g2/E00015.mat"]
    assert (data / "Georgia" / ".complete").exists() and (data / "Georgia" / "g2" / "E00015.mat").read_bytes() == good


def test_a_rerun_skips_verified_files_resumes_a_part_and_restarts_a_part_that_is_no_prefix(tmp_path, no_backoff):
    files = physionet_tree()
    stage = tmp_path / "data" / ".physionet" / "Georgia"
    (stage / "g1").mkdir(parents=True)
    (stage / "g1" / "E00009.hea").write_bytes(files["training/georgia/g1/E00009.hea"])  # verified earlier
    (stage / "g1" / "E00009.mat.part").write_bytes(files["training/georgia/g1/E00009.mat"][:5000])  # cut off
    (stage / "g2").mkdir()
    (stage / "g2" / "E00015.hea").write_bytes(b"not the listed bytes")  # damaged since: fetched again
    (stage / "g2" / "E00015.mat.part").write_bytes(b"\xff" * 7000)  # no prefix of the file
    assert D.source_state(tmp_path / "data", "Georgia", "physionet") == "partial (2 files)"
    with Server(files) as srv:
        D.download(tmp_path / "data", "Georgia", base_url=srv.url, progress=False)
    assert srv.log[0][0] == "SHA256SUMS.txt"  # the pool's order varies: the rest compared sorted
    got = sorted((n, r or "") for n, r, _ in srv.log[1:])
    assert got == [
        ("training/georgia/g1/E00009.mat", "bytes=5000-"),  # resumed: only the rest was sent
        ("training/georgia/g2/E00015.hea", ""),  # a damaged file is not skipped
        ("training/georgia/g2/E00015.mat", ""),  # ... then started over
        ("training/georgia/g2/E00015.mat", "bytes=7000-"),  # resumed, failed its sum ...
    ]  # and g1/E00009.hea, verified earlier, was not asked for
    assert [b for n, r, b in srv.log if r == "bytes=5000-"] == [len(files["training/georgia/g1/E00009.mat"]) - 5000]
    for rel in ("g1/E00009.hea", "g1/E00009.mat", "g2/E00015.hea", "g2/E00015.mat"):
        assert (tmp_path / "data" / "Georgia" / rel).read_bytes() == files[f"training/georgia/{rel}"]


def test_sources_selects_tranches_and_the_sums_file_can_replace_the_fetched_list(tmp_path):
    files = physionet_tree()
    listed = tmp_path / "my-SHA256SUMS.txt"
    listed.write_bytes(files["SHA256SUMS.txt"])
    with Server(files) as srv:
        D.download(tmp_path / "data", "ptb-xl", base_url=srv.url, progress=False, sha256=listed)
    assert sorted(requested(srv)) == ["training/ptb-xl/g1/HR00599.hea", "training/ptb-xl/g1/HR00599.mat"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".physionet", "PTB-XL"]


def test_a_source_folder_download_did_not_make_is_refused_before_the_list_is_fetched(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "PTB-XL").mkdir(parents=True)
    (data / "PTB-XL" / "notes.txt").write_text("mine")
    with Server(physionet_tree()) as srv:
        argv = ["download", "--out", str(data), "--sources", "PTB-XL", "--base-url", srv.url]
        assert main(argv) == 2 and "no .complete marker" in capsys.readouterr().err and srv.log == []
        assert main([*argv, "--force"]) == 0  # the remedy
    assert (data / "PTB-XL" / ".complete").exists()
    (kept,) = (data / ".moved-aside").glob("PTB-XL.stale-*/notes.txt")
    assert kept.read_text() == "mine"


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--unverified-archives"], "--unverified-archives applies to --from bucket only"),
        (["--keep-archives"], "--keep-archives applies to --from bucket only"),
        (["--workers", "0"], "--workers must be an integer >= 1"),
        (["--workers", "many"], "argument --workers: invalid int value"),
        (["--from", "ftp"], "argument --from: invalid choice"),
    ],
)
def test_bad_physionet_options_are_one_line_before_anything_is_written(tmp_path, capsys, flags, message):
    assert main(["download", "--out", str(tmp_path / "d"), "--base-url", "http://127.0.0.1:9/", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "d").exists()


def test_dry_run_names_physionets_list_and_tranche_folders_and_writes_nothing(tmp_path, capsys):
    assert main(["download", "--out", str(tmp_path / "d"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert D.PHYSIONET_URL + "SHA256SUMS.txt" in out and not (tmp_path / "d").exists()
    assert all(f"{D.PHYSIONET_URL}training/{folder}/" in out for folder in D.TRANCHES.values())
    assert out.count("missing") == 6


def test_a_transfer_cut_off_midway_is_resumed_from_where_it_stopped(tmp_path, no_backoff):
    files = physionet_tree()
    name = "training/ptb-xl/g1/HR00599.mat"
    with Server(files, cut={name}) as srv:
        D.download(tmp_path / "data", "PTB-XL", base_url=srv.url, progress=False)
    half = len(files[name]) // 2
    assert [(r, b) for n, r, b in srv.log if n == name] == [(None, half), (f"bytes={half}-", len(files[name]) - half)]
    assert (tmp_path / "data" / "PTB-XL" / "g1" / "HR00599.mat").read_bytes() == files[name]
