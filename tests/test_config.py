"""The one table of setup facts (config.SETUP_MODALITIES and its readers)."""

import pytest

from ecgssl_nb.config import SETUPS, is_ssl, setup_family, setup_modalities
from ecgssl_nb.errors import UserError


def test_setup_facts_come_from_one_table_and_match_table_ii_of_the_paper():
    assert [setup_family(s) for s in SETUPS] == ["t", "s", "tsc", "tsg"] * 2
    assert setup_modalities("ssl-t") == ("time",) and setup_modalities("s") == ("spec",)
    assert setup_modalities("tsg") == setup_modalities("ssl-tsc") == ("time", "spec")
    assert [is_ssl(s) for s in SETUPS] == [False] * 4 + [True] * 4
    with pytest.raises(UserError, match="--setup 'x' is not a setup"):
        setup_modalities("x")
