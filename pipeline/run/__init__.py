"""Stage 3 of the flow, locally: walk the plan (runner.py), check the budget first (budget.py) and hold for
approval where the manifest asks (approval.py). The cloud runs the same tasks from the state machine."""
