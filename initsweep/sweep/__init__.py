"""How a sweep's trials run: spaces (grid cells, Optuna's space), the worker-side trainable, the driver's
callbacks, the Ray connection, the Tuner; or in this process (`inprocess`), or only described (`plan`)."""
