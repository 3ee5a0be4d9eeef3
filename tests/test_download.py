"""download: the URL table, argument handling, resumable fetch (HTTP Range) and extraction, against
a loopback HTTP server started here and file:// URLs (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_records import rand_val, write_record

from ecgssl_nb.data import download as D
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.data.records import SOURCES


class Server:
    """Loopback HTTP server for `files` {name: bytes}; honours 'Range: bytes=N-' unless
    `ranges` is False; records (path, range header, bytes sent) for each request. The first
    reply for a name in `cut` announces the whole length but breaks off after half of it."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, cut: set[str] | None = None):
        self.files, self.ranges, self.log, self.cut = files, ranges, [], set(cut or ())
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # each request is logged before its reply, so the client never sees a reply first
                name = self.path.lstrip("/")
                if name not in outer.files:
                    outer.log.append((name, None, 0))
                    self.send_error(404)
                    return
                data = outer.files[name]
                rng = self.headers.get("Range")
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if outer.ranges and m:
                    start = int(m.group(1))
                    if start >= len(data):
                        outer.log.append((name, rng, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    body = data[start:]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    body = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if name in outer.cut:
                    outer.cut.discard(name)
                    body = body[: len(body) // 2]
                    self.close_connection = True
                outer.log.append((name, rng, len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def tar_gz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def challenge_archive(tmp: Path, top: str, names: list[str]) -> bytes:
    """A tar.gz like the Challenge's: one top folder holding .hea + .mat pairs."""
    folder = tmp / f"src-{top}-{names[0]}"
    for i, name in enumerate(names):
        write_record(
            folder,
            name,
            rand_val(n=1500, seed=int(hashlib.md5(name.encode()).hexdigest()[:6], 16) + i),
            dx="#Dx: 426783006",
        )
    return tar_gz({f"{top}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})


def sums_file(tmp: Path, files: dict[str, bytes]) -> Path:
    """A SHA256SUMS file (as `sha256sum` writes it) listing `files` {name: bytes}."""
    path = tmp / "SHA256SUMS"
    path.write_text("".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()))
    return path


def test_url_table_has_the_six_official_archives():
    assert list(D.ARCHIVES) == list(SOURCES[:6])
    assert {a.file for a in D.ARCHIVES.values()} == {
        "PhysioNetChallenge2020_Training_CPSC.tar.gz",
        "PhysioNetChallenge2020_Training_2.tar.gz",
        "PhysioNetChallenge2020_Training_StPetersburg.tar.gz",
        "PhysioNetChallenge2020_Training_PTB.tar.gz",
        "PhysioNetChallenge2020_PTB-XL.tar.gz",
        "PhysioNetChallenge2020_Training_E.tar.gz",
    }
    assert sum(a.records for a in D.ARCHIVES.values()) == 43101  # the paper's count
    for a in D.ARCHIVES.values():
        assert a.url() == "https://storage.googleapis.com/physionet-challenge-2020-12-lead-ecg-public/" + a.file


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("all", list(D.ARCHIVES)),
        ("ALL", list(D.ARCHIVES)),
        ("ptb-xl,CPSC", ["CPSC", "PTB-XL"]),
        (" georgia ", ["Georgia"]),
    ],
)
def test_parse_sources(spec, expected):
    assert D.parse_sources(spec) == expected


@pytest.mark.parametrize("spec", ["", "CPSC,Ningbo", "mimic"])
def test_parse_sources_rejects_unknown_names(spec):
    with pytest.raises(UserError, match="--sources"):
        D.parse_sources(spec)


def test_cli_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    rc = main(["download", "--from", "bucket", "--out", str(tmp_path / "data"), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and not (tmp_path / "data").exists()
    assert all(a.url() in out for a in D.ARCHIVES.values()) and out.count("missing") == 6


def test_cli_bad_sources_and_missing_out(tmp_path, capsys):
    assert main(["download", "--out", str(tmp_path), "--sources", "CPSC,bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and len(err.strip().splitlines()) == 1
    assert main(["download"]) == 2 and "--out" in capsys.readouterr().err


def test_fetch_resumes_a_partial_file_with_a_range_request(tmp_path):
    payload = np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(payload[:123_456])
    with Server({"f.bin": payload}) as srv:
        D.fetch(srv.url + "f.bin", dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload and not (tmp_path / "f.bin.part").exists()
    assert srv.log == [("f.bin", "bytes=123456-", 300_000 - 123_456)]  # only the rest was sent


def test_fetch_starts_over_when_the_server_ignores_ranges(tmp_path):
    payload = bytes(range(256)) * 100
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    with Server({"f.bin": payload}, ranges=False) as srv:
        D.fetch(srv.url + "f.bin", tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert srv.log[0][2] == len(payload)


def test_fetch_drops_a_part_longer_than_the_file(tmp_path):
    payload = b"x" * 1000
    (tmp_path / "f.bin.part").write_bytes(b"y" * 5000)
    with Server({"f.bin": payload}) as srv:
        D.fetch(srv.url + "f.bin", tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert [entry[1] for entry in srv.log] == ["bytes=5000-", None]


def test_fetch_rejects_a_wrong_sha256_and_moves_the_file_aside(tmp_path):
    with Server({"f.bin": b"abc" * 100}) as srv, pytest.raises(UserError, match="SHA-256"):
        D.fetch(srv.url + "f.bin", tmp_path / "f.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    assert (tmp_path / "f.bin.bad").read_bytes() == b"abc" * 100  # kept for inspection


def test_fetch_reports_http_errors(tmp_path):
    with Server({}) as srv, pytest.raises(UserError, match="HTTP 404"):
        D.fetch(srv.url + "nothere.tar.gz", tmp_path / "x", progress=False)


def test_fetch_from_a_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello" * 1000)
    D.fetch(src.as_uri(), tmp_path / "dst.bin", progress=False)
    assert (tmp_path / "dst.bin").read_bytes() == src.read_bytes()


def test_download_extracts_each_source_into_its_folder_and_prepare_reads_it(tmp_path):
    files = {
        D.ARCHIVES["CPSC"].file: challenge_archive(tmp_path, "Training_WFDB", ["A0001", "A0002"]),
        D.ARCHIVES["Georgia"].file: challenge_archive(tmp_path, "WFDB", ["E00001", "E00002", "E00003"]),
        D.ARCHIVES["PTB-XL"].file: challenge_archive(tmp_path, "WFDB", ["HR00001"]),
    }
    data, sums = tmp_path / "data", sums_file(tmp_path, files)
    with Server(files) as srv:
        D.download_archives(data, "CPSC,Georgia,PTB-XL", base_url=srv.url, progress=False, sha256=sums)
        assert sorted(p.name for p in data.iterdir()) == [".archives", "CPSC", "Georgia", "PTB-XL"]
        assert (data / "Georgia" / "WFDB" / "E00002.hea").exists() and (
            data / "PTB-XL" / "WFDB" / "HR00001.mat"
        ).exists()
        assert all((data / s / ".complete").exists() for s in ("CPSC", "Georgia", "PTB-XL"))
        assert list((data / ".archives").iterdir()) == []  # archives removed after extraction
        n_requests = len(srv.log)
        D.download_archives(
            data, "CPSC,Georgia,PTB-XL", base_url=srv.url, progress=False, sha256=sums
        )  # nothing left to do
        assert len(srv.log) == n_requests
    prepare(data, tmp_path / "prep", workers=1, progress=False)
    ix = load_prepared(tmp_path / "prep").index
    assert ix.groupby("source")["record"].count().to_dict() == {"CPSC": 2, "Georgia": 3, "PTB-XL": 1}


def test_download_resumes_after_an_interrupted_transfer_and_keeps_archives_on_request(tmp_path):
    archive = challenge_archive(tmp_path, "Training_PTB", ["S0001"])
    name = D.ARCHIVES["PTB"].file
    data = tmp_path / "data"
    (data / ".archives").mkdir(parents=True)
    (data / ".archives" / (name + ".part")).write_bytes(archive[:100])
    sums = sums_file(tmp_path, {name: archive})
    assert D.source_state(data, D.ARCHIVES["PTB"]) == "partial (100 bytes)"
    with Server({name: archive}) as srv:
        D.download_archives(data, "PTB", base_url=srv.url, keep_archives=True, progress=False, sha256=sums)
    assert srv.log == [(name, "bytes=100-", len(archive) - 100)]
    assert (data / ".archives" / name).read_bytes() == archive
    assert D.source_state(data, D.ARCHIVES["PTB"]) == "extracted"
    assert (data / "PTB" / "Training_PTB" / "S0001.hea").exists()


def test_download_extracts_an_already_downloaded_archive_without_the_network(tmp_path):
    name = D.ARCHIVES["INCART"].file
    data = tmp_path / "data"
    (data / ".archives").mkdir(parents=True)
    archive = challenge_archive(tmp_path, "Training_StPetersburg", ["I0001"])
    (data / ".archives" / name).write_bytes(archive)
    sums = sums_file(tmp_path, {name: archive})
    D.download_archives(data, "INCART", base_url="http://127.0.0.1:9/unreachable/", progress=False, sha256=sums)
    assert (data / "INCART" / "Training_StPetersburg" / "I0001.hea").exists()


def test_unsafe_archive_is_refused_and_nothing_escapes(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(tar_gz({"WFDB/ok.hea": b"x", "../evil.txt": b"y"}))
    with pytest.raises(UserError, match="leaves the target"):
        D.extract(bad, tmp_path / "out" / "CPSC")
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "CPSC").exists()


def test_corrupt_archive_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(tar_gz({"WFDB/a.hea": b"x" * 10000})[:60])
    with pytest.raises(UserError, match="not a readable tar.gz"):
        D.extract(bad, tmp_path / "out" / "CPSC")
    assert not (tmp_path / "out" / "CPSC").exists()
