"""The 27 -> 24 label space and the official weight matrix."""

import numpy as np

from ecgssl_nb.core import labels


def test_there_are_27_scored_codes_and_24_classes_after_merging():
    assert len(labels.SCORED_CODES) == 27
    assert len(labels.CLASSES) == 24
    assert not set(labels.MERGES) & set(labels.CLASSES)
    assert set(labels.MERGES.values()) <= set(labels.CLASSES)


def test_classes_follow_weights_csv_order():
    assert labels.CLASSES[0] == "270492004"  # IAVB, the first column of weights.csv
    assert labels.ABBREVIATIONS[labels.CLASSES.index("713427006")] == "CRBBB+RBBB"
    assert labels.CLASSES.index(labels.NORMAL_CLASS) == 20


def test_weight_matrix_is_symmetric_with_unit_diagonal():
    w = labels.weight_matrix()
    assert w.shape == (24, 24)
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(np.diag(w), 1.0)
    assert 0 <= w.min() and w.max() <= 1


def test_encode_merges_and_ignores_unscored_and_duplicate_codes():
    v = labels.encode(["59118001", "713427006", "428750005", "426783006", "426783006"])
    assert v.dtype == np.float32 and v.sum() == 2
    assert v[labels.CLASSES.index("713427006")] == 1
    assert v[labels.CLASSES.index("426783006")] == 1
    assert labels.merge_codes(["17338001"]) == ["427172004"]
