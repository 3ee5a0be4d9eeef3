"""The paper's method, and nothing else: each module reads top to bottom as its section of
Phan et al. 2022 (the machinery that runs it, records it and writes its files is outside, in
`ecgssl_nb.stages`, `ecgssl_nb.reproduce` and the data modules).

    labels      the 24 scored classes and the official tables (Sec. III-A)
    windows     250-sample windows of the records on the device (Sec. II-B, II-C)
    transforms  the views: crops, time cutout, Gaussian noise, frequency cutout, the STFT (Sec. II-B)
    backbones   xresnet1d50 and SE-ResNet34 (Sec. II-B.1, II-B.2)
    models      the classifiers: backbones + head, concatenation or gated fusion (Sec. II-C)
    schedules   the cosine schedules of pre-training (Sec. III-B)
    dino        DINO head, loss, centring, EMA teacher, one pre-training step (Sec. II-A, II-B)
    classify    fine-tuning, prediction over sliding windows, the two protocols (Sec. II-C, III-B)
    metrics     the Challenge 2020 metrics and the threshold search (Sec. III-B)
    settings    every hyperparameter, declared once with its range (Sec. III-B)
    errors      the one-line error types

It imports only itself, the standard library, numpy, scipy and torch
(tests/test_core_imports_only_method.py).
"""
