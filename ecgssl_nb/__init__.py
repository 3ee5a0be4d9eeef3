"""ecgssl_nb: the library behind the ecgssl-book companion to Phan et al. (IEEE BHI 2022).

`core` is the paper's method; `stages` runs its two training stages; `data` turns the Challenge's
files into the prepared corpus; `study` plans and runs every run of the tables (in process or on
Ray); `analysis` reads the results for the book. See ARCHITECTURE.md.
"""

__version__ = "0.1.0"  # the package's version, written here only (pyproject.toml reads it)
