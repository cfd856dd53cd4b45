"""Where outputs live: a local folder or an S3 bucket with the same keys (store.py), the output folder's marker
and locks (outdir.py), and the cache's integrity checks (integrity.py)."""
