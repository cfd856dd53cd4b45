"""Local fakes at the AWS boundary for the cloud tests (moto does the rest)."""
