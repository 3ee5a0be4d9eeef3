"""Windows cut from a device-resident corpus (book: Transforms): random training crops and sliding
evaluation windows are exact slices of the records, in the documented ranges and order."""

import numpy as np
import pandas as pd
import pytest
import torch

from ecgssl_nb.core import windows as W
from ecgssl_nb.core.errors import UserError

LENGTHS = [1000, 250, 260, 1124, 1125, 249 + 250]


def make_corpus(lengths=LENGTHS, gap: int = 3, labels: bool = True) -> tuple[W.Corpus, np.ndarray]:
    """Records back to back (with `gap` unused samples between them); sample t of lead c holds
    t + 10000*c, so every window says where it came from."""
    offsets = np.concatenate([[gap], np.cumsum(np.asarray(lengths) + gap)[:-1] + gap])
    total = int(offsets[-1] + lengths[-1] + gap)
    signal = (np.arange(total)[None, :] + 10000 * np.arange(12)[:, None]).astype(np.float32)  # (12, T)
    lab = np.eye(24, dtype=np.float32)[np.arange(len(lengths)) % 24] if labels else None
    return W.Corpus(signal, offsets, lengths, labels=lab), offsets


def starts_of(x: torch.Tensor) -> np.ndarray:
    """Absolute first sample of each window (lead 0), checking every window is one clean slice."""
    x = x.numpy()
    first = x[:, 0, 0].astype(np.int64)
    expect = first[:, None, None] + np.arange(x.shape[2])[None, None, :] + 10000 * np.arange(12)[None, :, None]
    np.testing.assert_array_equal(x, expect)
    return first


def test_corpus_keeps_one_float32_device_tensor_and_per_record_offsets():
    corpus, offsets = make_corpus()
    assert corpus.signal.shape[0] == 12 and corpus.signal.dtype == torch.float32
    assert corpus.offsets.dtype == torch.long and corpus.lengths.dtype == torch.long
    assert corpus.labels.shape == (len(LENGTHS), 24) and len(corpus) == len(LENGTHS)
    np.testing.assert_array_equal(corpus.record(3)[0].numpy(), np.arange(offsets[3], offsets[3] + 1124))


def test_random_windows_are_slices_of_their_records_in_rec_order():
    corpus, offsets = make_corpus()
    rec = torch.tensor([3, 0, 3, 5])
    x = corpus.random_windows(rec, n_crops=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20, 12, 250) and x.dtype == torch.float32
    first = starts_of(x)
    owner = rec.repeat_interleave(5).numpy()  # rows b*5 .. b*5+4 belong to rec[b]
    rel = first - offsets[owner]
    lengths = np.asarray(LENGTHS)[owner]
    assert (rel >= 0).all() and (rel <= lengths - 251).all()


def test_random_window_starts_cover_zero_to_len_minus_251_and_a_250_record_starts_at_0():
    corpus, offsets = make_corpus()
    gen = torch.Generator().manual_seed(1)
    x = corpus.random_windows(torch.tensor([2, 1]), n_crops=2000, generator=gen)
    first = starts_of(x)
    rel_260 = first[:2000] - offsets[2]
    assert set(rel_260.tolist()) == set(range(10))  # randint(0, 260-251): 0..9, never 10
    assert (first[2000:] == offsets[1]).all()  # exactly 250 samples: start 0


def test_random_windows_reproduce_for_a_seed_and_labels_follow():
    corpus, _ = make_corpus()
    rec = torch.tensor([0, 4, 2])
    a = corpus.random_windows(rec, 3, torch.Generator().manual_seed(7))
    b = corpus.random_windows(rec, 3, torch.Generator().manual_seed(7))
    c = corpus.random_windows(rec, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    lab = corpus.window_labels(rec, 3)
    assert lab.shape == (9, 24)
    np.testing.assert_array_equal(lab.argmax(1).numpy(), [0, 0, 0, 4, 4, 4, 2, 2, 2])


def test_random_windows_reject_a_window_longer_than_the_shortest_record():
    corpus, _ = make_corpus()
    with pytest.raises(UserError, match="shortest record"):
        corpus.random_windows(torch.tensor([0]), 1, torch.Generator(), length=251)
    with pytest.raises(UserError, match="rec must hold"):
        corpus.random_windows(torch.tensor([6]), 1, torch.Generator())
    with pytest.raises(UserError, match="generator"):
        corpus.random_windows(torch.tensor([0]), 1, None)


def test_sliding_windows_step_by_125_and_drop_the_tail():
    corpus, offsets = make_corpus()
    owner, start = corpus.sliding_windows()
    counts = np.bincount(owner.numpy(), minlength=len(LENGTHS))
    # 1000 -> 7 (0..750); 250 -> 1; 260 -> 1; 1124 -> 7 (tail of 124 dropped); 1125 -> 8; 499 -> 2
    np.testing.assert_array_equal(counts, [7, 1, 1, 7, 8, 2])
    np.testing.assert_array_equal(start[owner == 0].numpy(), np.arange(0, 751, 125))
    assert len(corpus.sliding_windows()[0]) == 26
    assert len(corpus.sliding_windows(length=1000, stride=1)[0]) == 1 + 125 + 126


def test_iter_sliding_windows_yields_slices_with_their_owners_in_batches():
    corpus, offsets = make_corpus()
    parts = list(corpus.iter_sliding_windows(batch_windows=4))
    assert [len(o) for _, o in parts] == [4] * 6 + [2]
    x = torch.cat([p[0] for p in parts])
    owner = torch.cat([p[1] for p in parts]).numpy()
    first = starts_of(x)
    owner_ref, start_ref = corpus.sliding_windows()
    np.testing.assert_array_equal(owner, owner_ref.numpy())
    np.testing.assert_array_equal(first, offsets[owner] + start_ref.numpy())


def test_iter_sliding_windows_over_some_rows_reports_corpus_positions():
    corpus, offsets = make_corpus()
    parts = list(corpus.iter_sliding_windows(batch_windows=100, rows=[4, 1]))
    ((x, owner),) = parts
    np.testing.assert_array_equal(owner.numpy(), [4] * 8 + [1])
    assert starts_of(x)[-1] == offsets[1]
    assert len(corpus.sliding_windows(rows=[4, 1])[0]) == 9
    short, _ = make_corpus([249, 300])
    assert len(short.sliding_windows()[0]) == 1  # a record shorter than 250 has no window


def test_mean_over_windows_averages_each_output_over_the_records_own_windows_in_any_batching():
    corpus, offsets = make_corpus()

    def start_and_nothing(x):  # (w, 12, 250) -> ((w, 2) absolute start and 1, None)
        return torch.stack([x[:, 0, 0], torch.ones(len(x))], dim=1), None

    # mean window start by hand: 1000 -> 0..750 (375); 250, 260 -> 0; 1124 -> 375; 1125 -> 0..875
    # (437.5); 499 -> 0, 125 (62.5)
    expect = offsets + np.array([375, 0, 0, 375, 437.5, 62.5])
    for batch in (4, 100):
        means, none = corpus.mean_over_windows(start_and_nothing, batch_windows=batch)
        assert means.dtype == np.float64 and none is None
        np.testing.assert_array_equal(means, np.stack([expect, np.ones(6)], axis=1))
    short, _ = make_corpus(lengths=[1000, 200])
    with pytest.raises(UserError, match="1 records are shorter than 250 samples and have no window"):
        short.mean_over_windows(start_and_nothing, batch_windows=4)


def test_corpus_rejects_records_outside_the_signal():
    with pytest.raises(UserError, match="signal must have shape"):
        W.Corpus(np.zeros((250, 12), np.float32), [0], [250])
    with pytest.raises(UserError, match="inside the signal"):
        W.Corpus(np.zeros((12, 300), np.float32), [100], [250])
    with pytest.raises(UserError, match="labels must have shape"):
        W.Corpus(np.zeros((12, 300), np.float32), [0], [250], labels=np.zeros((2, 24)))


class FakePrepared:
    """The parts of prepare.Prepared that Corpus.from_prepared reads."""

    def __init__(self, tmp_path, lengths):
        self.lengths = np.asarray(lengths)
        offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        total = int(self.lengths.sum())
        path = tmp_path / "signals.npy"
        data = (np.arange(total)[:, None] + 10000 * np.arange(12)[None, :]).astype(np.float32)  # (T, 12)
        np.save(path, data)
        self.signals = np.load(path, mmap_mode="r")
        self.index = pd.DataFrame(
            {"record": [f"R{i}" for i in range(len(lengths))], "offset": offsets, "length": self.lengths}
        )
        self.offsets = offsets

    def label_matrix(self) -> np.ndarray:
        return np.eye(24, dtype=np.float32)[np.arange(len(self.lengths)) % 24]


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_from_prepared_copies_only_the_selected_records_in_order(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(W, "_COPY_CHUNK", chunk)
    prep = FakePrepared(tmp_path, [300, 260, 1000, 250, 400])
    corpus = W.Corpus.from_prepared(prep, rows=[4, 1, 2, 0])  # runs: [4], [1, 2], [0]
    assert corpus.signal.shape == (12, 400 + 260 + 1000 + 300)
    np.testing.assert_array_equal(corpus.lengths.numpy(), [400, 260, 1000, 300])
    np.testing.assert_array_equal(corpus.rows, [4, 1, 2, 0])
    np.testing.assert_array_equal(corpus.labels.argmax(1).numpy(), [4, 1, 2, 0])
    for pos, row in enumerate([4, 1, 2, 0]):
        expect = np.asarray(prep.signals[prep.offsets[row] : prep.offsets[row] + prep.lengths[row]]).T
        np.testing.assert_array_equal(corpus.record(pos).numpy(), expect)
    x, owner = next(corpus.iter_sliding_windows(1000))
    np.testing.assert_array_equal(x[owner == 1][0].numpy(), prep.signals[300:550].T)  # row 1 starts at 300


def test_from_prepared_accepts_a_mask_and_rejects_bad_rows(tmp_path):
    prep = FakePrepared(tmp_path, [300, 260, 1000])
    corpus = W.Corpus.from_prepared(prep, rows=np.array([True, False, True]))
    np.testing.assert_array_equal(corpus.rows, [0, 2])
    assert corpus.signal.shape == (12, 1300)
    assert len(W.Corpus.from_prepared(prep)) == 3
    with pytest.raises(UserError, match="rows must be positions"):
        W.Corpus.from_prepared(prep, rows=[3])
    with pytest.raises(UserError, match="mask must have 3"):
        W.Corpus.from_prepared(prep, rows=np.array([True, False]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_corpus_on_cuda_gives_the_cpu_windows_for_a_cpu_generator():
    corpus, _ = make_corpus()
    gpu = W.Corpus(corpus.signal, corpus.offsets, corpus.lengths, corpus.labels, device="cuda")
    rec = torch.tensor([0, 3, 4])
    a = corpus.random_windows(rec, 4, torch.Generator().manual_seed(3))
    b = gpu.random_windows(rec, 4, torch.Generator().manual_seed(3))
    assert b.device.type == "cuda" and torch.equal(a, b.cpu())
    xs = [x.cpu() for x, _ in gpu.iter_sliding_windows(5)]
    assert torch.equal(torch.cat(xs), torch.cat([x for x, _ in corpus.iter_sliding_windows(5)]))
