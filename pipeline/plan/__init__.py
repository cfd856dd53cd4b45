"""Stage 2 of the flow: a Campaign becomes a Plan of typed jobs with content keys, stages and a cost estimate.

build.py     Campaign -> Plan (jobs, dependencies, stages)
jobs.py      the job specs, one frozen dataclass per kind
keys.py      content keys: a hash of everything that decides an output
schedule.py  readiness, GPU batches and waves: the one schedule both runners follow
cost.py, pricing.py   the estimate and the prices it is made from
"""
