"""Record: attempts and delivery outcomes written back in batches."""
