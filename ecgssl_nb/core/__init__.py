"""The paper's method, and nothing else; each module reads top to bottom as its section of Phan et
al. 2022: labels (Sec. III-A), windows and transforms (II-B), backbones (II-B.1, II-B.2), models
(II-C), schedules (III-B), dino (II-A, II-B), classify and metrics (II-C, III-B), settings (III-B);
errors holds the one-line error types. The machinery that runs, records and writes it lives in
`ecgssl_nb.stages`, `ecgssl_nb.study.reproduce` and the data modules. It imports only itself, the
standard library, numpy, scipy and torch (tests/test_core_imports_only_method.py).
"""
