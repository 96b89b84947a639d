"""eval: benchmark harnesses and reports. Imports the cores only (never `app`).

Every task writes `results.json` (task, config, environment, metrics, items), `report.md` and plots
into its output folder through `eval.harness`.
"""
