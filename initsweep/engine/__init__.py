"""The engine: torch only. Init schemes' rules, models, data, the pure training loop, packed seeds and
diagnostics at init; nothing here knows of Ray, MLflow, Optuna, SciPy or matplotlib (import-linter checks)."""
