"""A plugin with a misspelled hook name: check_pending must turn it into a reported error."""

import kme


@kme.hookimpl
def kme_register_editor(register):  # missing final "s"
    raise AssertionError("never called")
