"""The eight classifiers of the study (paper Sec. II-C, Table II) and the tools around them.

`ECGNet(setup)` puts the two backbones together with their head:

* ``t``   : xresnet1d50 on the time window      -> f1 (512) -> head 512 -> 256 -> 24
* ``s``   : SE-ResNet34 on the spectrogram       -> f2 (512) -> head 512 -> 256 -> 24
* ``tsc`` : concat(f1, f2) (1024)                -> head 1024 -> 512 -> 24
* ``tsg`` : w = softmax(Linear(1024 -> 2)(concat(f1, f2))), concat(w1 f1, w2 f2) -> head 1024 -> 512 -> 24

The ``ssl-`` setups are the same networks; they differ only in where the backbone weights
come from (`load_backbone`, which refuses a partial load: bug B6). Outputs are logits; the
sigmoid lives in the loss and in evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .backbones import se_resnet34, xresnet1d50
from .errors import UserError, check_int
from .settings import check_modality, check_setup, setup_family, setup_modalities

log = logging.getLogger(__name__)

# Prefixes that wrappers put in front of a backbone's keys: DDP ("module."), torch.compile
# ("_orig_mod."), a DINO multi-crop wrapper or a whole classifier ("backbone.").
STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.")


class ClassifierHead(nn.Module):
    """Linear(in_dim -> hidden) then Linear(hidden -> n_classes), NO nonlinearity between, as released
    (B20: kept; one linear map of rank <= hidden); `hidden` defaults to in_dim // 2 (512 -> 256)."""

    def __init__(self, in_dim: int, n_classes: int = 24, hidden: int | None = None):
        super().__init__()
        hidden = in_dim // 2 if hidden is None else hidden
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(f))  # (B, in_dim) -> (B, hidden) -> (B, n_classes)


def make_backbone(modality: str) -> nn.Module:
    """A fresh backbone: "time" -> xresnet1d50(), "spec" -> se_resnet34(); both give (B, 512)."""
    return xresnet1d50() if check_modality(modality) == "time" else se_resnet34()


class ECGNet(nn.Module):
    """One of the study's classifiers: `forward(x_time (B, 12, 250), x_spec (B, 12, 13, 21))`, both
    normalised, -> logits (B, n_classes); an input the setup does not use is ignored."""

    def __init__(self, setup: str, n_classes: int = 24):
        super().__init__()
        self.setup = check_setup(setup)
        self.family = setup_family(setup)  # "t", "s", "tsc" or "tsg"
        check_int("n_classes", n_classes, 1)
        self.uses_time = "time" in setup_modalities(setup)
        self.uses_spec = "spec" in setup_modalities(setup)
        self.time_backbone = xresnet1d50() if self.uses_time else None
        self.spec_backbone = se_resnet34() if self.uses_spec else None
        dims = [b.feature_dim for b in (self.time_backbone, self.spec_backbone) if b is not None]
        self.feature_dim = sum(dims)  # 512 for t and s, 1024 for tsc and tsg
        self.gate = nn.Linear(self.feature_dim, 2) if self.family == "tsg" else None
        self.head = ClassifierHead(self.feature_dim, n_classes)

    def _check(self, name: str, x: torch.Tensor | None, shape: str, ndim: int) -> torch.Tensor:
        if x is None:
            raise UserError(f"ECGNet({self.setup!r}).forward needs {name} {shape}, got None")
        if not isinstance(x, torch.Tensor) or x.dim() != ndim or x.shape[1] != 12:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"ECGNet({self.setup!r}).forward: {name} must be {shape}, got {got}")
        return x

    def forward(
        self, x_time: torch.Tensor | None = None, x_spec: torch.Tensor | None = None, return_gate: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, n_classes); with return_gate=True, (logits, gate (B, 2) or None)."""
        feats = []
        if self.uses_time:
            x_time = self._check("x_time", x_time, "(B, 12, T)", 3)
            feats.append(self.time_backbone(x_time))  # (B, 12, 250) -> (B, 512)
        if self.uses_spec:
            x_spec = self._check("x_spec", x_spec, "(B, 12, F, frames)", 4)
            if self.training and x_spec.shape[0] == 1:
                # layer4 maps are 1x1 for a 13x21 input: BatchNorm would see one value per channel
                raise UserError(
                    "ECGNet: a batch of 1 cannot be run in training mode through the "
                    "spectrogram backbone (BatchNorm needs >= 2 values per channel); "
                    "call .eval() or use a larger batch"
                )
            feats.append(self.spec_backbone(x_spec))  # (B, 12, 13, 21) -> (B, 512)
        if len(feats) == 2 and feats[0].shape[0] != feats[1].shape[0]:
            raise UserError(
                f"ECGNet: x_time and x_spec have different batch sizes ({feats[0].shape[0]} and {feats[1].shape[0]})"
            )
        f = torch.cat(feats, dim=1)  # (B, 512) or (B, 1024)
        gate = None
        if self.gate is not None:
            gate = torch.softmax(self.gate(f), dim=1)  # (B, 2): one weight per modality, sum 1
            f = torch.cat([gate[:, 0:1] * feats[0], gate[:, 1:2] * feats[1]], dim=1)  # (B, 1024)
        logits = self.head(f)  # (B, n_classes)
        return (logits, gate) if return_gate else logits


def build_model(setup: str, n_classes: int = 24) -> ECGNet:
    """The classifier for a setup name ("t", "ssl-tsg", ...); UserError for an unknown name."""
    return ECGNet(setup, n_classes=n_classes)


@torch.no_grad()
def init_xavier(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialise `module` as the released code does for scratch runs (book: Fine-tuning): conv
    weights xavier-normal, biases N(0, 1); BatchNorm gamma N(1, 0.02), beta 0; Linear weights
    xavier-normal, biases untouched."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.xavier_normal_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 1.0, generator=generator)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            # This also undoes xresnet's zero-gamma on the last BN of each block.
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=generator)
    return module


def _read_state(source: str | Path | Mapping) -> dict:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"load_backbone: weights file {path} does not exist")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"load_backbone: {path} is not a readable torch state_dict ({e})") from None
    if not isinstance(source, Mapping) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise UserError(
            f"load_backbone: source must be a state_dict (name -> tensor) or a file "
            f"holding one, got {type(source).__name__}"
        )
    return dict(source)


def _strip_prefixes(state: dict, target_keys: set) -> tuple[dict, list[str]]:
    """Strip wrapper prefixes (STRIP_PREFIXES) that every key carries, until the keys match."""
    stripped: list[str] = []
    while state and set(state) != target_keys:
        prefix = next((p for p in STRIP_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
        stripped.append(prefix)
    return state, stripped


def _listing(what: str, items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit]) + (f", ... and {len(items) - limit} more" if len(items) > limit else "")
    return f"{len(items)} {what} ({shown})"


def load_backbone(backbone: nn.Module, source: str | Path | Mapping) -> int:
    """Load a state_dict (or a file holding one) into `backbone`, all or nothing (the released fusion
    models silently loaded 0 of 601 tensors, B6); returns and logs the tensors loaded. Wrapper
    prefixes (STRIP_PREFIXES) are stripped; a missing/unexpected key or shape is a UserError."""
    state = _read_state(source)
    target = backbone.state_dict()
    state, stripped = _strip_prefixes(state, set(target))
    missing = [k for k in target if k not in state]  # in the backbone's order: stem first
    unexpected = [k for k in state if k not in target]
    mismatched = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(target[k].shape)} expected"
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    if missing or unexpected or mismatched:
        where = source if isinstance(source, (str, Path)) else "the given state_dict"
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        parts = [_listing(w, items) for w, items in found if items]
        note = f"; stripped prefixes {stripped}" if stripped else ""
        heads = {k.split(".", 1)[0] for k in unexpected}
        if missing and len(heads) == 1 and len(unexpected) == len(state):
            note += (
                f"; every key starts with {next(iter(heads)) + '.'!r}, which is not a known "
                f"wrapper prefix {list(STRIP_PREFIXES)}: rename the keys before loading"
            )
        raise UserError(
            f"load_backbone: {where} does not fit {type(backbone).__name__} "
            f"({len(target)} tensors): " + "; ".join(parts) + note
        )
    backbone.load_state_dict(state, strict=True)
    note = f" (stripped {stripped})" if stripped else ""
    log.info("load_backbone: loaded %d of %d tensors into %s%s", len(state), len(target), type(backbone).__name__, note)
    return len(state)


def use_fast_cuda_math(device: torch.device | str) -> None:
    """On CUDA, TF32 for fp32 matmuls and convolutions and cudnn.benchmark (process-wide, for both
    training stages; two CUDA runs may then differ in the last bits); nothing on other devices."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cudnn.benchmark = True
