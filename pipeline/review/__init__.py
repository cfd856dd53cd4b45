"""Per-asset review: decisions kept beside the runs (decisions.py), each asset's history for the report
(history.py), and the export of a run's approved deliverables (export.py)."""
