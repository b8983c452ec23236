"""Route: which connectors a message goes to."""
