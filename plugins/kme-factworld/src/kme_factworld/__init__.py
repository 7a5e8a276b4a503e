"""kme plugin: factworld."""
