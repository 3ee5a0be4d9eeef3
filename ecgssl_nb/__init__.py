"""ecgssl_nb: the library behind the ecgssl-book companion to Phan et al. (IEEE BHI 2022).

One concept per module; data flows records -> prepare -> windows -> transforms -> models ->
selfkd / finetune -> metrics -> results. See ARCHITECTURE.md at the repository root.
"""

__version__ = "0.1.0"
