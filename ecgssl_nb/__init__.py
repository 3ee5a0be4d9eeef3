"""ecgssl_nb: the library behind the ecgssl-book companion to Phan et al. (IEEE BHI 2022).

`ecgssl_nb.core` is the paper's method; `ecgssl_nb.stages` runs its two training stages; the
modules beside them prepare the data, run the study and analyse it. See ARCHITECTURE.md.
"""

__version__ = "0.1.0"  # the package's version, written here only (pyproject.toml reads it)
