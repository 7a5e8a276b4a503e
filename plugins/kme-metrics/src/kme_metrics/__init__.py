"""kme plugin: metrics."""
