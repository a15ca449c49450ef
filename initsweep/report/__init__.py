"""The report: statistics over seeds, tables, the grid section, plots, and the Markdown/HTML/CSV files.
Reads `TrialResult`s only, so a report drawn at the end of a sweep and one rebuilt from MLflow are the same;
it imports neither torch nor Ray."""
