"""Fault drills for hookstream: SIGKILLs, a receiver outage, PostgreSQL and Mosquitto restarts,
each under load, counting what was accepted, delivered, lost and duplicated
(``python -m drills [--quick] [--only NAME]``, ``make drills``)."""
