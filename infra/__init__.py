"""The CDK app's constructs: buckets, task functions, the workflow and its triggers (wired in stack.py)."""
