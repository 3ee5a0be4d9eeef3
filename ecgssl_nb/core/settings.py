"""The settings of the study, every hyperparameter declared once with its range (paper Sec. III-B,
Table I; book: Deviations for every departure), and the three profiles: `tiny` (the synthetic
fixture on a CPU, the default), `paper` (PhysioNet/CinC 2020 as the authors ran it, GPU) and
`samples` (the real sample records shipped with the tests, CPU).

Values are the paper's where it states them, else the released code's; where the two differ or the
released code has a bug, the corrected choice is the default and the released behaviour a named
option (`ecgssl_nb.study.recipes`). Every field is `_setting(default, what, range)`, checked when
its dataclass is built (`SettingError` naming the key); the one table serves the check, --help
(`config.settings_help`) and the book. Text (`--set`, config files) is `ecgssl_nb.config`'s.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, replace
from numbers import Real
from typing import Any, Callable

from .errors import SEED_LIMIT, UserError, check_choice, check_pair, is_int
from .metrics import DEFAULT_GRID, DEFAULT_THRESHOLD

SETUPS = ("t", "s", "tsc", "tsg", "ssl-t", "ssl-s", "ssl-tsc", "ssl-tsg")
MODALITIES = ("time", "spec")
PROTOCOLS = ("paper", "honest")
WINDOW = 250  # samples at 100 Hz = 2.5 s, every model (book: Transforms)
TARGET_FS = 100  # Hz
N_FOLDS = 10
# The view transform sets (transforms.TIME_TRANSFORMS, SPEC_TRANSFORMS): main pre-training, Fig. 3 ablation
MAIN_TRANSFORMS = {"time": "t1", "spec": "t2"}
ABLATION_TRANSFORMS = {"time": ("none", "tc", "gn"), "spec": ("none", "tc", "fc")}
ABLATION_SETUPS = {"time": "ssl-t", "spec": "ssl-s"}  # the fine-tuning that scores each ablated backbone
TC_MODES = ("per_lead", "paper")  # time cutout: one span per lead (released) or one shared by all leads (Eq. 1)


# --- the range of every setting, declared with its field --------------------------------------------

FAMILIES = ("t", "s", "tsc", "tsg")  # the setup families, keys of the per-family fine-tuning settings


class SettingError(UserError):
    """A setting outside its range: '{key} {problem}'. `key` is the setting as written ('lr',
    'epochs.t'), `keys` the fields the failed check involves."""

    def __init__(self, key: str, problem: str, keys: tuple[str, ...] = ()):
        super().__init__(f"{key} {problem}")
        self.key, self.problem, self.keys = key, problem, keys or (key.partition(".")[0],)


@dataclass(frozen=True)
class Range:
    """The values one setting takes: `text` says which (--help, the book); `problem(value)` is None
    in range, else what is wrong ('must be an integer >= 1, got 0'). A dict setting has exactly the
    keys `entries`, each value checked by `problem`."""

    text: str
    problem: Callable[[Any], str | None]
    entries: tuple[str, ...] = ()

    def check(self, key: str, value: Any) -> None:
        """SettingError naming `key` (and the entry, for a dict) when `value` is out of range."""
        if self.entries:
            got = sorted(map(str, value)) if isinstance(value, dict) else value
            if not isinstance(value, dict) or got != sorted(self.entries):
                raise SettingError(key, f"must have exactly the entries {', '.join(self.entries)}, got {got!r}")
        named = [(f"{key}.{e}", value[e]) for e in self.entries] if self.entries else [(key, value)]
        for name, v in named:
            wrong = self.problem(v)
            if wrong:
                raise SettingError(name, wrong, (key,))


def _range(text: str, ok: Callable[[Any], bool], must: str = "") -> Range:
    """The values `ok` accepts, described by `text`; another's problem: 'must be {must or text}, got {v!r}'."""
    return Range(text, lambda v: None if ok(v) else f"must be {must or text}, got {v!r}")


def integer(low: int, high: int | None = None) -> Range:
    """An integer (not a bool, not 3.0) with low <= value (< high when given)."""
    text = f"an integer >= {low}" if high is None else f"an integer {low} <= n < {high}"
    return _range(text, lambda v: is_int(v, low, high))


def number(low: float | None = None, high: float | None = None, low_open: bool = False) -> Range:
    """A finite real number (not a bool) with low <= value (low < value when low_open) <= high."""
    if low is not None and high is not None:
        text = f"a number in {'(' if low_open else '['}{low}, {high}]"
    else:
        text = "a finite number" + (f" {'>' if low_open else '>='} {low}" if low is not None else "")

    def ok(v: Any) -> bool:
        real = isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
        return real and (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)

    return _range(text, ok)


def one_of(*choices: str) -> Range:
    """One of the named choices."""
    named = ", ".join(choices)
    return Range(
        f"one of {named}", lambda v: None if isinstance(v, str) and v in choices else f"{v!r} is not one of {named}"
    )


def pair(lo_min: float, hi_max: float, lo_open: bool = False) -> Range:
    """A pair (lo, hi) of numbers with lo_min <= lo <= hi <= hi_max (lo > lo_min when lo_open)."""

    def problem(v: Any) -> str | None:
        try:
            check_pair("", v, lo_min, hi_max, lo_open)
        except UserError as exc:
            return str(exc).strip()
        return None

    return Range(f"a pair (lo, hi) with {lo_min} {'<' if lo_open else '<='} lo <= hi <= {hi_max}", problem)


def per_key(keys: tuple[str, ...], entry: Range) -> Range:
    """A dict of exactly `keys` (the setup families, the modalities), each value in `entry`'s range."""
    return Range(f"{{{', '.join(keys)}}} -> {entry.text}", entry.problem, keys)


def instance(cls: type) -> Range:
    """A `cls` (built, hence checked)."""
    return _range(f"a {cls.__name__}", lambda v: isinstance(v, cls))


def _listed(v: Any, item: Callable[[Any], Any], empty: bool = True) -> bool:
    """A list or tuple (non-empty unless `empty`) of values that `item` accepts."""
    return isinstance(v, (tuple, list)) and (empty or len(v) > 0) and all(map(item, v))


def fold_list(nullable: bool = False) -> Range:
    """A non-empty list of distinct folds 0..N_FOLDS-1 (or None when nullable)."""
    text = f"a non-empty list of distinct folds 0..{N_FOLDS - 1}" + (" (or none)" if nullable else "")

    def ok(v: Any) -> bool:
        folds = _listed(v, lambda f: is_int(f, 0, N_FOLDS), empty=False)
        return (v is None and nullable) or (folds and len(set(v)) == len(v))

    return _range(text, ok)


FLAG = _range("true or false", lambda v: isinstance(v, bool))  # a bool, not 1 or 'yes'
TEXT = _range("text", lambda v: isinstance(v, str) and v != "", "non-empty text")
CODES = _range(
    "a list of codes like B1, B7", lambda v: _listed(v, lambda c: isinstance(c, str) and re.fullmatch(r"B\d+", c))
)
UNIT = number(0.0, 1.0)
GRID = _range(  # the threshold grid
    "a non-empty list of numbers in [0.0, 1.0]", lambda v: _listed(v, lambda x: not UNIT.problem(x), empty=False)
)
CROP, SPAN = pair(0.0, 1.0, True), pair(0.0, 1.0)  # a crop ratio (> 0) and a cut span, fractions of the window
SEED = _range("an integer 0 <= n < 2**63", lambda v: is_int(v, 0, SEED_LIMIT))  # errors.check_seed: every --seed


def _setting(default: Any = dataclasses.MISSING, what: str = "", values: Range | None = None) -> Any:
    """A settings field with its meaning and its range attached (`dataclasses.fields(cls)[i].metadata`:
    "what" and "range"); a dict default is copied for each instance."""
    meta = {"what": what, "range": values}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


class _Checked:
    """A settings dataclass: its fields are range-checked when it is built, then `_check` (several at once)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.metadata.get("range") is None:
                raise TypeError(f"{type(self).__name__}.{f.name} declares no range (settings._setting)")
            f.metadata["range"].check(f.name, getattr(self, f.name))
        self._check()

    def _check(self) -> None:
        """The checks of several fields at once (a class with some overrides it)."""


# The choices of the settings that name a behaviour (the stages import them from here).
KEEP_CHOICES = ("final", "lowest-loss")  # B12: the backbone kept
OPTIMIZERS = ("adamw", "adam-l2")  # B10: DINO's AdamW / the released Adam with L2
CENTER_UPDATES = ("once", "twice")  # B7: official DINO / released code
FREQ_CUTOUT = ("applied", "discarded")  # B16: FC chained before TC / released code (TC only)
PROTOCOL_MODES = ("both", "paper-exact")  # B14: 8 training folds (paper + honest) / the released 9
FUSION_SSL = ("loaded", "ignored")  # B6: the fusion models' SSL backbones
COMPILE_MODES = ("off", "default", "reduce-overhead")  # the training steps: eager, compiled, compiled + CUDA graphs
# How a run is executed, not what it computes: recorded in provenance.json, never matched for reuse
# or resume (stages.pretrain.pretrain_request says why; compiled agrees with eager within the tests' tolerance).
_EXECUTION = {  # (default, meaning, range) of each: one source for PretrainConfig and FinetuneConfig
    "compile": (
        "off",
        "the training step: off (eager), default, or reduce-overhead (CUDA graphs on CUDA)",
        one_of(*COMPILE_MODES),
    ),
    "checkpoint_epochs": (1, "a checkpoint after every N-th epoch (0: by checkpoint_minutes only)", integer(0)),
    "checkpoint_minutes": (0.0, "also one when M minutes passed since the last (0 = off)", number(0)),
    "log_every": (0, "read the running training figures every N steps (0 = once per epoch)", integer(0)),
}
RECORDED_ONLY = tuple(_EXECUTION)
SELECT_METRICS = ("auprc", "auroc")
DATA_KINDS = ("fixture", "samples", "physionet2020")
LEAD_MODES = ("twelve", "lead-i")  # B1: every lead resampled, or the released lead I in all 12 channels


@dataclass(frozen=True)
class AugmentConfig(_Checked):
    """The settings of the DINO views (paper Sec. II-B; book: Transforms, Deviations B16-B19). Each
    pair (lo, hi) is the range of a uniform draw: crop scales and cut spans are fractions of the
    window (250 samples; 21 frames, spectrogram cut spans of the crop), the noise sigma is in mV."""

    time_global_scale: tuple = _setting((0.5, 1.0), "crop ratio r of a global time view", CROP)
    time_local_scale: tuple = _setting(
        (0.1, 0.5), "crop ratio r of a local time view, stretched to 250 samples too (B17)", CROP
    )
    time_cutout_mode: str = _setting(
        "per_lead", "time cutout: a span per lead (per_lead, released) or one for all (paper, B18)", one_of(*TC_MODES)
    )
    time_cutout: tuple = _setting((0.2, 0.4), "time cutout span / window, mode per_lead", SPAN)
    paper_time_cutout: tuple = _setting((0.0, 0.5), "time cutout span / window, mode paper (Eq. 1)", SPAN)
    noise_sigma: tuple = _setting((0.005, 0.025), "Gaussian noise sigma, mV, one per view", pair(0.0, float("inf")))
    spec_global_scale: tuple = _setting((0.6, 1.0), "crop ratio of a global spectrogram view, of 21 frames (B19)", CROP)
    spec_local_scale: tuple = _setting((0.3, 0.6), "crop ratio of a local spectrogram view", CROP)
    spec_time_cutout: tuple = _setting((0.1, 0.35), "spectrogram time cutout span / crop width", SPAN)

    def time_view_args(self) -> dict[str, Any]:
        """Keyword arguments of `transforms.time_views` for these settings."""
        mode = self.time_cutout_mode
        ratio = self.time_cutout if mode == "per_lead" else self.paper_time_cutout
        return dict(
            global_scale=self.time_global_scale,
            local_scale=self.time_local_scale,
            tc_mode=mode,
            tc_ratio=ratio,
            sigma=self.noise_sigma,
        )

    def spec_view_args(self) -> dict[str, Any]:
        """Keyword arguments of `transforms.spec_views` for these settings."""
        return dict(
            global_scale=self.spec_global_scale, local_scale=self.spec_local_scale, tc_ratio=self.spec_time_cutout
        )


@dataclass(frozen=True)
class PretrainConfig(_Checked):
    """Self-distillation settings of one modality (paper Sec. II-A, II-B; book: Deviations, B7-B13)."""

    epochs: int = _setting(what="training epochs", values=integer(1))
    batch_size: int = _setting(
        what="records per step, the global batch (split over DDP processes); each gives n_global + n_local views",
        values=integer(2),
    )
    n_global: int = _setting(2, "global views per record", integer(1))
    n_local: int = _setting(8, "local views per record", integer(0))
    out_dim: int = _setting(65536, "DINO head output width", integer(1))
    base_lr: float = _setting(5e-4, "peak LR = base_lr * batch_size / 256", number(0, low_open=True))
    min_lr: float = _setting(1e-6, "final LR of the cosine schedule", number(0))
    warmup_epochs: int = _setting(10, "epochs of linear LR warm-up", integer(0))
    weight_decay: float = _setting(0.04, "weight decay at the start of its cosine schedule", number(0))
    weight_decay_end: float = _setting(0.4, "weight decay at the end", number(0))
    teacher_temp: float = _setting(0.04, "teacher softmax temperature after its warm-up", number(0, low_open=True))
    warmup_teacher_temp: float = _setting(0.04, "teacher temperature at the start", number(0, low_open=True))
    warmup_teacher_temp_epochs: int = _setting(30, "epochs of the teacher temperature warm-up", integer(0))
    student_temp: float = _setting(0.1, "student softmax temperature", number(0, low_open=True))
    center_momentum: float = _setting(0.9, "EMA momentum of the teacher centre", number(0, 1))
    teacher_momentum: float = _setting(0.996, "EMA momentum of the teacher weights", number(0, 1))
    teacher_momentum_schedule: str = _setting(
        "fixed", "fixed (released) or cosine (to 1, official DINO)", one_of("fixed", "cosine")
    )
    optimizer: str = _setting(
        "adamw", "adamw (DINO, no decay on biases/norms) or adam-l2 (released, B10)", one_of(*OPTIMIZERS)
    )
    clip_grad: float = _setting(0.0, "gradient norm clip; 0 = none (released); DINO uses 3.0", number(0))
    freeze_last_layer_epochs: int = _setting(
        1, "epochs the head's last layer stays frozen (B9: frozen during epoch 0)", integer(0)
    )
    keep: str = _setting("final", "backbone kept: final (B12 fix) or lowest-loss (released)", one_of(*KEEP_CHOICES))
    center_update: str = _setting(
        "once", "B7: once (batch mean, official DINO) or twice (released: mean / (2B) again)", one_of(*CENTER_UPDATES)
    )
    freq_cutout: str = _setting(
        "applied", "B16: spec t2/fc views: applied (FC then TC) or discarded (released: TC only)", one_of(*FREQ_CUTOUT)
    )
    max_steps: int = _setting(0, "smoke run: stop after this many optimisation steps (0 = no limit)", integer(0))
    augment: AugmentConfig = _setting(AugmentConfig, "the views' crop, cutout, noise ranges", instance(AugmentConfig))
    amp: bool = _setting(True, "bf16 autocast of backbone and head, on CUDA only (ignored on the CPU)", FLAG)
    # how the run is executed (RECORDED_ONLY), the same four settings in both stages
    compile: str = _setting(*_EXECUTION["compile"])
    checkpoint_epochs: int = _setting(*_EXECUTION["checkpoint_epochs"])
    checkpoint_minutes: float = _setting(*_EXECUTION["checkpoint_minutes"])
    log_every: int = _setting(*_EXECUTION["log_every"])

    def _check(self) -> None:
        if self.n_global + self.n_local < 2:
            raise SettingError(
                "n_global + n_local", "must be at least 2 (a teacher view and another student view)",
                ("n_global", "n_local"),
            )  # fmt: skip


@dataclass(frozen=True)
class FinetuneConfig(_Checked):
    """Down-stream fine-tuning settings (paper Sec. II-C; book: Fine-tuning)."""

    epochs: dict = _setting(what="epochs per setup family", values=per_key(FAMILIES, integer(0)))
    batch_records: dict = _setting(
        what="records per step per setup family (each gives `crops` windows)", values=per_key(FAMILIES, integer(1))
    )
    crops: int = _setting(5, "random 250-sample crops per record and step", integer(1))
    lr: float = _setting(5e-3, "peak learning rate (Adam, cosine schedule)", number(0, low_open=True))
    min_lr: dict = _setting(
        {"t": 1e-5, "s": 1e-6, "tsc": 1e-5, "tsg": 1e-5},
        "final LR per setup family (<= lr)",
        per_key(FAMILIES, number(0)),
    )
    val_stride: int = _setting(125, "samples between validation windows", integer(1))
    eval_batch_windows: int = _setting(2048, "windows per evaluation batch", integer(1))
    select_metric: str = _setting(
        "auprc", "the checkpoint kept: best auprc (the README's best-PRC) or auroc", one_of(*SELECT_METRICS)
    )
    threshold_grid: tuple = _setting(DEFAULT_GRID, "the threshold search's grid", GRID)
    threshold_default: float = _setting(DEFAULT_THRESHOLD, "every other class's threshold while one is searched", UNIT)
    amp: bool = _setting(True, "bf16 autocast of the forward pass, on CUDA only (ignored on the CPU)", FLAG)
    ablation_folds: tuple | None = _setting(
        None, "Fig. 3 fine-tunings run on these folds (none: the profile's)", fold_list(nullable=True)
    )
    fusion_ssl: str = _setting(
        "loaded",
        "B6: ssl-tsc/ssl-tsg backbones loaded or ignored (released: scratch, default init)",
        one_of(*FUSION_SSL),
    )
    protocol: str = _setting(
        "both", "B14: both (8 training folds) or paper-exact (released: 9 folds)", one_of(*PROTOCOL_MODES)
    )
    max_steps: int = _setting(0, "smoke run: stop after this many optimisation steps (0 = no limit)", integer(0))
    # how the run is executed (RECORDED_ONLY), the same four settings in both stages
    compile: str = _setting(*_EXECUTION["compile"])
    checkpoint_epochs: int = _setting(*_EXECUTION["checkpoint_epochs"])
    checkpoint_minutes: float = _setting(*_EXECUTION["checkpoint_minutes"])
    log_every: int = _setting(*_EXECUTION["log_every"])

    def _check(self) -> None:
        for family, low in self.min_lr.items():
            if low > self.lr:  # the cosine would climb, not decay
                raise SettingError(f"min_lr.{family}", f"must be <= lr ({self.lr}), got {low!r}", ("min_lr", "lr"))


@dataclass(frozen=True)
class Profile(_Checked):
    """A study: its data, folds, the settings of both stages and the training seed."""

    name: str = _setting(what="the profile's name", values=TEXT)
    data: str = _setting(what="the records: fixture, samples or physionet2020", values=one_of(*DATA_KINDS))
    folds: tuple = _setting(what="folds run by `reproduce` (each the outer validation fold once)", values=fold_list())
    fixture_records: int = _setting(what="size of the synthetic corpus (tiny profile only)", values=integer(0))
    pretrain: dict = _setting(what="modality -> PretrainConfig", values=per_key(MODALITIES, instance(PretrainConfig)))
    finetune: FinetuneConfig = _setting(what="the fine-tuning settings", values=instance(FinetuneConfig))
    device: str = _setting("cpu", "cpu, cuda, cuda:1 or auto", TEXT)
    workers: int = _setting(2, "prepare: processes", integer(1))
    seed: int = _setting(0, "seed of the data (fixture, folds) and default training seed", SEED)
    leads: str = _setting("twelve", "B1, prepare: twelve or lead-i (released)", one_of(*LEAD_MODES))
    recipe: str = _setting("corrected", "the recipe label (see `recipes`)", TEXT)
    departures: tuple = _setting((), "the released behaviours switched on, e.g. (B1, B7)", CODES)
    runs_per_device: int = _setting(1, "fine-tunings at once per `reproduce --devices` entry", integer(1))


def _tiny() -> Profile:
    # The whole tiny study (8 pre-trainings with the Fig. 3 ablation, 22 fine-tunings) on 2 CPU
    # cores: 2 epochs, 2 global + 4 local views (the paper: 300, 2 + 8). It illustrates, never reproduces.
    pre = PretrainConfig(
        epochs=2, batch_size=32, n_local=4, out_dim=4096, warmup_epochs=1, warmup_teacher_temp_epochs=0
    )
    return Profile(
        name="tiny",
        data="fixture",
        folds=(0, 1),
        fixture_records=400,
        pretrain={"time": pre, "spec": pre},
        # About 20 steps per epoch on the 400-record fixture: TSG reaches a held-out macro AUROC of
        # about 0.75 in 3 epochs (tests/test_finetune.py pins > 0.65; lr 3e-3 gave 0.62).
        finetune=FinetuneConfig(
            epochs=dict.fromkeys(FAMILIES, 3),
            batch_records=dict.fromkeys(FAMILIES, 16),
            crops=2,
            lr=1e-3,
            eval_batch_windows=512,
            ablation_folds=(0,),
        ),
    )


# An ESTIMATE, not a measurement: the paper profile's fine-tunings that fit at once on one 80 GB
# H100 with 16 host cores, about 5.5 GB each for the fusion families (activations under bf16, weights,
# AdamW moments, the 3.1 GB corpus, a CUDA context) in 90 % of 80 GB. `benchmarks/bench_paper.py
# --memory-estimate` derives it (a test keeps the two equal); `benchmarks/gpu_check.sh` measures it.
PAPER_RUNS_PER_DEVICE = 13


def _paper() -> Profile:
    # compile stays off in both stages (the default) until CUDA graphs have run on a GPU (opt in
    # with --set); on the CPU inductor fails on the spec fine-tuning step
    pre = PretrainConfig(epochs=300, batch_size=196)
    return Profile(
        name="paper",
        data="physionet2020",
        folds=tuple(range(N_FOLDS)),
        fixture_records=0,
        pretrain={"time": pre, "spec": replace(pre, batch_size=256)},
        finetune=FinetuneConfig(
            epochs={"t": 100, "s": 200, "tsc": 100, "tsg": 100},
            batch_records={"t": 128, "s": 256, "tsc": 128, "tsg": 128},
        ),
        device="cuda",
        workers=max(1, (os.cpu_count() or 2)),
        runs_per_device=PAPER_RUNS_PER_DEVICE,
    )


def _samples() -> Profile:
    # The 208 real records of tests/data/ecg-samples on a CPU in minutes; the tiny profile's 3 epochs
    # learn nothing on them, these fine-tuning settings (lr: the tiny one's) were measured (book: Real sample records).
    tiny = _tiny()
    return replace(
        tiny,
        name="samples",
        data="samples",
        folds=SAMPLES_FOLDS,
        fixture_records=0,
        finetune=replace(
            tiny.finetune,
            epochs=dict.fromkeys(FAMILIES, 8),
            batch_records=dict.fromkeys(FAMILIES, 8),
            crops=4,
            ablation_folds=None,
        ),
    )


SAMPLES_FOLDS = (0, 1, 2, 3)  # 4 of 10 folds: about 40% of the records predicted out of fold (build budget)
SAMPLES_SETUPS = ("t",)  # what the book runs on the sample records (reproduce --setups)


PROFILES = {"tiny": _tiny, "paper": _paper, "samples": _samples}


def get_profile(name: str = "tiny") -> Profile:
    """The named profile; a clear error for an unknown name."""
    return PROFILES[check_choice("--profile", name, PROFILES, "a profile")]()


def check_setup(setup: str) -> str:
    return check_choice("--setup", setup, SETUPS, "a setup")


# The one source for what a setup is (paper Sec. II-C, Table II): its family without the "ssl-"
# prefix, the modalities its classifier reads, and whether it starts from pre-trained backbones.
SETUP_MODALITIES = {"t": ("time",), "s": ("spec",), "tsc": ("time", "spec"), "tsg": ("time", "spec")}


def setup_family(setup: str) -> str:
    """'ssl-tsg' -> 'tsg' (the classifier without the pre-training)."""
    return check_setup(setup).removeprefix("ssl-")


def setup_modalities(setup: str) -> tuple[str, ...]:
    """The modalities a setup's classifier reads: 'tsg' -> ('time', 'spec'), 'ssl-s' -> ('spec',)."""
    return SETUP_MODALITIES[setup_family(setup)]


def is_ssl(setup: str) -> bool:
    """True for the setups fine-tuned from self-distilled backbones ('ssl-t', ...)."""
    return check_setup(setup).startswith("ssl-")


def check_modality(modality: str) -> str:
    return check_choice("--modality", modality, MODALITIES, "a modality")


def check_fold(fold: int, n_folds: int = N_FOLDS) -> int:
    if not (0 <= int(fold) < n_folds):
        raise UserError(f"--fold {fold} is out of range: folds are 0..{n_folds - 1}")
    return int(fold)


def parse_folds(spec: str, n_folds: int = N_FOLDS) -> tuple:
    """'0-9' -> (0..9); '0,3,5' -> (0, 3, 5)."""
    out: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in str(spec).split(","))):
            lo, dash, hi = part.partition("-")  # '3' or '3-5'
            out.extend(range(int(lo), int(hi if dash else lo) + 1))
    except ValueError:
        raise UserError(f"--folds {spec!r} is not a list of folds like '0-9' or '0,3,5'") from None
    bad = [f for f in out if not 0 <= f < n_folds]
    if bad:
        raise UserError(f"--folds {spec!r}: fold {bad[0]} is out of range (folds are 0..{n_folds - 1})")
    if not out:
        raise UserError(f"--folds {spec!r} names no fold")
    return tuple(dict.fromkeys(out))


def resolve_device(device: str | None) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; a clear error for an unavailable device."""
    import torch  # torch: ~1.3 s at import; the settings (reproduce --help, the notebooks) are read without it

    device = device or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device!r}: CUDA is not available on this machine (use --device cpu)")
    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a torch device (try cpu, cuda, cuda:1)") from None
    return device
