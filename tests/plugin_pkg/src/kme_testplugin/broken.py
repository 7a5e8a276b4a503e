"""A plugin whose import fails: it must be reported, not fatal."""

raise ImportError("this plugin needs a library that is not installed (simulated)")
