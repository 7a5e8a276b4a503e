"""One progress switch for the kernel and every plugin."""

from __future__ import annotations

import pytest

from kme.progress import progress, progress_enabled


def test_enabled_by_default_and_off_when_the_caller_declines(monkeypatch):
    monkeypatch.delenv("KME_NO_PROGRESS", raising=False)
    assert progress_enabled() is True
    assert progress_enabled(False) is False


def test_an_enclosing_scope_turns_every_bar_off_and_restores_after(monkeypatch):
    monkeypatch.delenv("KME_NO_PROGRESS", raising=False)
    with progress(False):
        assert progress_enabled() is False
        with progress(True):  # an inner scope cannot turn bars back on
            assert progress_enabled() is False
    assert progress_enabled() is True


@pytest.mark.parametrize("value,expected", [("1", False), ("true", False), ("0", True), ("", True)])
def test_environment_variable(monkeypatch, value, expected):
    monkeypatch.setenv("KME_NO_PROGRESS", value)
    assert progress_enabled() is expected

