"""The book's analysis: result files and the paper's tables (`results`), claims against fold
noise (`claims`), figures (`plots`), and each chapter's tables (`dataset`, `training`, `tables`).
The notebooks only call these."""
