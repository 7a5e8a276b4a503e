"""Key statistics go to a per-session directory (the fixture locate-and-edit plugins share)."""

from kme_editlib.testing import isolated_stats  # noqa: F401
