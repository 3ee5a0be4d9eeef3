"""Fixtures shared by the unit tests."""

import hashlib
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a test module, restored afterwards: on a small shared
    machine, OpenMP threads that spin-wait for each other cost many times the work itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- one synthetic corpus for the whole session ------------------------------------------------
# Several test modules train on the same small corpus. Building it once saves a fixture and a
# `prepare` per module. The folders are shared, so they are READ-ONLY for tests: a test that
# needs to change a file copies the folder into its own tmp_path first. Since tests may run as
# root (where file modes do not stop a write), each folder's content is fingerprinted when it is
# built and checked again at the end of the session; a change fails the session, naming the files.

SHARED_FIXTURE = dict(n_records=120, seed=0)


def _tree_fingerprint(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below `folder`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _read_only(folder: Path):
    """Yield `folder`, then fail if any file below it was added, removed or changed."""
    before = _tree_fingerprint(folder)
    yield folder
    after = _tree_fingerprint(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        pytest.fail(f"a test wrote into the shared read-only folder {folder}: {changed[:10]}")


@pytest.fixture(scope="session")
def fixture_corpus(tmp_path_factory):
    """The synthetic Challenge 2020 corpus `make_fixture(n_records=120, seed=0)`, built once per
    session (six sources, .hea + .mat). Read-only."""
    from ecgssl_nb.data.fixture import make_fixture

    out = make_fixture(tmp_path_factory.mktemp("shared") / "fixture", **SHARED_FIXTURE)
    yield from _read_only(Path(out))


@pytest.fixture(scope="session")
def prepared_corpus(fixture_corpus, tmp_path_factory):
    """`prepare(fixture_corpus, workers=1)`: the prepared folder of the shared corpus (10 folds,
    seed 0), built once per session. Read-only."""
    from ecgssl_nb.data.prepare import prepare

    out = prepare(fixture_corpus, tmp_path_factory.mktemp("shared") / "prepared", workers=1, progress=False)
    yield from _read_only(Path(out))
