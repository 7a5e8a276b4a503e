"""docs/survey-coverage.md: every component it names is registered, no row is empty, every
page and section it links to exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "survey-coverage.md"
SURVEY_SECTIONS = ("Metrics (§4)", "Methods (§5, Table 2)", "Datasets (§6, Table 3)")
BEYOND = "Beyond the survey"


def sections(text: str) -> dict[str, list[dict[str, str]]]:
    """The rows of every table under each ``## heading``, keyed by their table's header cells."""
    out: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        rows: list[dict[str, str]] = []
        header: list[str] | None = None
        for line in body.splitlines():
            if not line.startswith("|"):
                header = None  # a table ends at the first line that is not a row
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(dict(zip(header, cells, strict=True)))
        if rows:
            out[title.strip()] = rows
    return out


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule)."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


@pytest.fixture(scope="module")
def registered() -> set[str]:
    from kme.cli import make_cli
    from kme.plugins import build_plugin_manager

    res = CliRunner().invoke(make_cli(build_plugin_manager()), ["plugins", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    return {name for plugin in got["plugins"] for kind in plugin["provides"].values() for name in kind}


@pytest.fixture(scope="module")
def tables() -> dict[str, list[dict[str, str]]]:
    return sections(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_every_table(tables):
    for title in (*SURVEY_SECTIONS, BEYOND):
        assert tables.get(title), f"docs/survey-coverage.md has no table under '## {title}'"


@pytest.mark.parametrize("title", SURVEY_SECTIONS)
def test_no_survey_row_is_empty_and_every_component_is_registered(tables, registered, title):
    for row in tables[title]:
        for column, cell in row.items():
            assert cell and cell not in ("—", "-", "?"), f"{title}: row {row} has an empty '{column}'"
        components = names(row["kme component"])
        assert components, f"{title}: row {row} names no component"
        missing = [c for c in components if c not in registered]
        assert not missing, f"{title}: {missing} named in docs/survey-coverage.md but not registered"


def test_survey_methods_cover_table_2(tables):
    """Every reference of the survey's Table 2 has its row."""
    refs = {row["survey reference"] for row in tables["Methods (§5, Table 2)"]}
    table_2 = {"Mitchell et al., 2022b", "Murty et al., 2022", "Madaan et al., 2022", "Li et al., 2023c",
               "Zheng et al., 2023", "Zhong et al., 2023", "Dong et al., 2022a", "Huang et al., 2023",
               "Hartvigsen et al., 2022", "Zhu et al., 2020", "Chen et al., 2020", "Lee et al., 2022",
               "Sinitsin et al., 2020", "Ni et al., 2023", "Ha et al., 2016", "De Cao et al., 2021",
               "Hase et al., 2023", "Mitchell et al., 2022a", "Cheng et al., 2023b", "Dai et al., 2022",
               "Meng et al., 2022", "Meng et al., 2023", "Li et al., 2023b", "Yu et al., 2023", "Wu et al., 2023",
               "Gupta et al., 2023", "Ma et al., 2023"}
    assert table_2 - refs == set()


def test_beyond_the_survey_names_only_registered_components(tables, registered):
    for row in tables[BEYOND]:
        implemented = row["status in kme"] == "implemented"
        assert bool(names(row["kme component"])) == implemented, row
        for name in names(row["kme component"]) + names(row["nearest in kme"]):
            assert name in registered, f"beyond the survey: {name!r} is not registered"


def test_every_link_resolves():
    text = DOC.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = (DOC.parent / path).resolve()
        assert page.exists(), f"docs/survey-coverage.md links to {path}, which does not exist"
        if anchor:
            headings = [slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)]
            assert anchor in headings, f"docs/survey-coverage.md links to {target}: no such section"


def test_slug_and_parser():
    assert slug("Conventions: paper text, released code and kme") == "conventions-paper-text-released-code-and-kme"
    got = sections("## A\n\n| x | y |\n|---|---|\n| 1 | `a`, `b` |\n\ntext\n\n| z |\n|---|\n| 2 |\n## B\nnone\n")
    assert got == {"A": [{"x": "1", "y": "`a`, `b`"}, {"z": "2"}]} and names(got["A"][0]["y"]) == ["a", "b"]
