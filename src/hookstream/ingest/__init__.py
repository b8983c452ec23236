"""Ingest: gateways' messages accepted, validated and stored with their deliveries."""
