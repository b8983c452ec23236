"""Queue: due deliveries claimed under a lease, and the hints that wake the claimer."""
