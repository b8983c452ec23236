"""hookstream's benchmarks: ``make bench`` or ``python -m bench --help``.

One module per benchmark (drain.py, ingest.py, latency.py, fanout.py for fan-out and isolation,
backlog.py, mqtt.py with its MQTT clients in mqttclient.py); what they share in common.py
(options, figures, processes, databases, tenants) and load.py (the load generators); the fast
receiver in receiver.py (``--hang`` for an endpoint that never answers); the ingest reference
app in refapp.py; py-spy recording and summaries in profile.py; the project's targets in
targets.py; HTTP clients compared as senders in senders.py (``make bench-senders``, on its
own). Results go to bench/results/latest.json and a timestamped copy, charts to
bench/results/*.png (charts.py), and ``python -m bench.report`` prints README's table.
"""
