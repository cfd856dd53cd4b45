"""Lambda handlers of the cloud runner: each parses its event, calls one `pipeline.cloud` function with an
S3Store on the output bucket, and returns a small JSON answer (state_machines/campaign.asl.json)."""
