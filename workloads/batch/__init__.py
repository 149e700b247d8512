"""Reference batch-inference workload: Ray Data content-moderation-style pipeline (see README.md)."""
