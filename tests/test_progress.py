"""One progress switch for the kernel and every plugin."""

from __future__ import annotations

import pytest

from kme.progress import library_output, progress, progress_enabled


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



def test_library_output_follows_kme_and_restores(monkeypatch):
    import logging
    import warnings

    from huggingface_hub import utils as hub
    from transformers.utils import logging as tf_logging

    from kme.logs import is_quiet, quiet

    import sys

    # the tests set HF_HUB_DISABLE_PROGRESS_BARS=1, which the hub reads once, at import
    monkeypatch.setattr(sys.modules[hub.are_progress_bars_disabled.__module__], "HF_HUB_DISABLE_PROGRESS_BARS", None)
    monkeypatch.delenv("KME_NO_PROGRESS", raising=False)
    saved = tf_logging.get_verbosity()
    tf_logging.set_verbosity_warning()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf_logging.enable_progress_bar()
        hub.enable_progress_bars()
    try:
        with library_output():  # kme's defaults: transformers untouched
            assert tf_logging.get_verbosity() == logging.WARNING and tf_logging.is_progress_bar_enabled()
        with quiet(), progress(False), library_output():
            assert is_quiet()
            assert tf_logging.get_verbosity() == logging.ERROR
            assert not tf_logging.is_progress_bar_enabled() and hub.are_progress_bars_disabled()
        assert not is_quiet()
        assert tf_logging.get_verbosity() == logging.WARNING
        assert tf_logging.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
        tf_logging.set_verbosity(logging.CRITICAL)  # a user's quieter setting is never raised
        with library_output(quiet=True):
            assert tf_logging.get_verbosity() == logging.CRITICAL
    finally:
        tf_logging.set_verbosity(saved)
        hub.disable_progress_bars()


def test_quiet_console_shows_errors_only(capsys):
    import structlog

    from kme.logs import configure_logging, quiet

    configure_logging(None)
    log = structlog.get_logger("kme")
    with quiet():
        log.warning("hidden.warning")
        log.error("shown.error")
    log.warning("shown.warning")
    captured = capsys.readouterr()
    assert captured.out == ""  # never stdout
    assert "hidden.warning" not in captured.err
    assert "shown.error" in captured.err and "shown.warning" in captured.err
