"""Stage 5 of the flow: the run's named outputs, report.json (the contract), report.html and the run summary.

write.py    copies named outputs out of the cache and writes report.json and report.html
records.py  the report's records, typed
html.py     report.html, self-contained
summary.py  the short summary printed at the end of a run and sent by the notifications
"""
