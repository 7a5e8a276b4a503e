"""Text templates in editor params (``"New Fact: {fact}\\n"``): plain named fields only.

``str.format`` also evaluates ``{fact.__class__.__mro__}`` and ``{0[1]}``: a template from a
pipeline file could read object attributes into a prompt, or fail with ``IndexError`` deep in
a run. :func:`check_template` refuses any field that is not one of the named plain fields, so a
bad template is a params error at validation time; :func:`render` formats only checked ones.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Any

__all__ = ["check_template", "render", "template_validator"]


def check_template(template: str, fields: Iterable[str]) -> str:
    """``template`` if every ``{...}`` in it is one of ``fields`` with no attribute, index,
    conversion or format spec; otherwise ``ValueError`` saying which field and what is allowed."""
    allowed = set(fields)
    shown = ", ".join("{" + f + "}" for f in sorted(allowed))
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:  # unbalanced braces
        raise ValueError(f"not a valid template ({e}); write a literal brace as '{{{{' or '}}}}'; "
                         f"fields: {shown}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed:
            raise ValueError(f"template field {{{name}}} is not allowed: use only {shown}")
        if spec or conversion:
            raise ValueError(f"template field {{{name}}} may not have a conversion or format spec; use {{{name}}}")
    return template


def render(template: str, fields: Iterable[str], **values: Any) -> str:
    """``template`` with ``values`` filled in, after :func:`check_template` against ``fields``."""
    check_template(template, fields)
    return template.format_map({k: values[k] for k in fields if k in values})


def template_validator(fields: Iterable[str]) -> Any:
    """A pydantic ``AfterValidator`` for a template param that may use only ``fields``."""
    from pydantic import AfterValidator

    names = tuple(fields)
    return AfterValidator(lambda v: check_template(v, names))
