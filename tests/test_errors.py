"""errors.check_int: the one integer check behind the library's "NAME must be an integer >= LOW" errors."""

import numpy as np
import pytest

from ecgssl_nb.core.errors import UserError, check_int


def test_check_int_returns_a_python_int_for_python_and_numpy_integers():
    assert check_int("n", 3, 1) == 3 and type(check_int("n", 3, 1)) is int
    for value in (np.int64(3), np.int32(3), np.uint8(3)):
        out = check_int("n", value, 1)
        assert out == 3 and type(out) is int


def test_check_int_accepts_the_bound_and_refuses_below_it():
    assert check_int("--seed", 0, 0) == 0
    with pytest.raises(UserError) as err:
        check_int("n_folds", 1, 2)
    assert str(err.value) == "n_folds must be an integer >= 2, got 1"
    with pytest.raises(UserError) as err:
        check_int("--seed", np.int64(-1), 0)
    assert str(err.value) == f"--seed must be an integer >= 0, got {np.int64(-1)!r}"


@pytest.mark.parametrize(
    "value, shown",
    [(True, "True"), (False, "False"), (np.True_, repr(np.True_)), (3.0, "3.0"), (np.float64(3), repr(np.float64(3))),
     ("3", "'3'"), (None, "None")],
)  # fmt: skip
def test_check_int_refuses_bools_floats_and_non_numbers_naming_the_value(value, shown):
    with pytest.raises(UserError) as err:
        check_int("--epochs", value, 0)
    assert str(err.value) == f"--epochs must be an integer >= 0, got {shown}"
