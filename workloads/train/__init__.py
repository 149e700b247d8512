"""Reference training workload: Ray Train data-parallel PyTorch on glyph digits (see README.md)."""
