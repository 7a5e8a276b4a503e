"""kme plugin: datasets."""
