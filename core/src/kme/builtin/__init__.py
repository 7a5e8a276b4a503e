"""The kernel's own plugins, registered like any other (first in loading order)."""
