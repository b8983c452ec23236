"""hookstream's benchmarks: ``make bench`` or ``python -m bench --help``.

One module per benchmark (drain.py, ingest.py, latency.py); what they share in common.py
(options, figures, processes, databases, tenants) and load.py (the load generators); the fast
receiver in receiver.py; the ingest reference app in refapp.py; py-spy recording and summaries
in profile.py. Results go to bench/results/latest.json and a timestamped copy.
"""
