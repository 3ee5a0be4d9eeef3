"""Provenance records: reuse only on an equal request, move aside on force, one writer a folder."""

import hashlib
import json
import subprocess
import sys

import pytest

from ecgssl_nb import provenance as P
from ecgssl_nb.core.errors import UserError


def test_sha256_file_equals_hashlib(tmp_path):
    data = bytes(range(256)) * 50_000
    (tmp_path / "f").write_bytes(data)
    assert P.sha256_file(tmp_path / "f", chunk=4096) == hashlib.sha256(data).hexdigest()


def test_request_read_back_equals_request_built(tmp_path):
    req = P.request("finetune", {"epochs": 3, "grid": (0.1, 0.2), "path": tmp_path}, {"prepared": "ab"}, 7)
    P.write(tmp_path, req)
    assert P.read(tmp_path)["request"] == req
    assert json.loads((tmp_path / P.PROVENANCE).read_text())["code_version"] == P.code_version()


def test_request_refuses_nan():
    with pytest.raises(ValueError):
        P.request("x", {"lr": float("nan")}, {}, 0)


def test_differences_name_dotted_keys():
    a = P.request("s", {"epochs": 3, "opt": {"lr": 1}}, {"prepared": "a"}, 0)
    b = P.request("s", {"epochs": 5, "opt": {"lr": 1, "wd": 2}}, {"prepared": "b"}, 0)
    assert P.differences(a, b) == [
        "inputs.prepared: a -> b",
        "settings.epochs: 3 -> 5",
        "settings.opt.wd: (absent) -> 2",
    ]
    assert P.differences(a, a) == []


def test_claim_new_same_refused_forced(tmp_path):
    out = tmp_path / "run"
    a = P.request("s", {"epochs": 3}, {}, 0)
    b = P.request("s", {"epochs": 4}, {}, 0)
    assert P.claim(out, a) == "new"
    (out / "result.json").write_text("{}")
    assert P.claim(out, a) == "same"
    with pytest.raises(UserError, match=r"settings\.epochs: 3 -> 4.*--force"):
        P.claim(out, b)
    assert P.read(out)["request"] == a  # refused: nothing changed
    assert P.claim(out, b, force=True) == "moved"
    assert P.read(out)["request"] == b and not (out / "result.json").exists()
    (aside,) = tmp_path.glob("run.stale-*")
    assert P.read(aside)["request"] == a and (aside / "result.json").exists()  # nothing deleted


def test_claim_refuses_folder_without_record(tmp_path):
    (tmp_path / "x.txt").write_text("foreign")
    with pytest.raises(UserError, match="no provenance.json"):
        P.claim(tmp_path, P.request("s", {}, {}, 0))


def test_second_writer_is_refused_naming_the_first(tmp_path):
    with P.lock(tmp_path):
        with pytest.raises(UserError, match=r"in use by pid \d+"):
            with P.lock(tmp_path):
                pass
    with P.lock(tmp_path):  # released after the block
        pass


def test_lock_dies_with_its_process(tmp_path):
    code = f"from ecgssl_nb import provenance as P\nimport os\nwith P.lock({str(tmp_path)!r}):\n    os._exit(0)\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    with P.lock(tmp_path):
        pass
