"""``kme report``: one self-contained HTML file (docs/compare.md), and retention.png's 0–1 axis."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_compare import fake_run, make_runs, metric

from kme.html_report import write_html_report


class Parsed(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []
        self.rows: dict[str, int] = {}
        self.table: str | None = None
        self.in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self.table = a.get("id") or "?"
            self.rows[self.table] = 0
        if tag == "tbody":
            self.in_body = True
        if tag == "tr" and self.in_body and self.table:
            self.rows[self.table] += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.in_body = False
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag):
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, model_dir) -> Path:
    return make_runs(tmp_path_factory.mktemp("sweep"), model_dir, scales=(0.5, 2.0))


def check_self_contained(p: Parsed) -> None:
    for tag, a in p.tags:
        for attr in ("src", "href"):
            v = a.get(attr) or ""
            assert not v.lower().startswith(("http://", "https://", "//")), (tag, v)
        assert not (tag == "script" and a.get("src")), "external script"
        assert tag != "link", "external stylesheet"
    assert all((a.get("src") or "").startswith("data:image/png;base64,") for a in p.all("img"))


def test_report_is_one_self_contained_file(kme_cli, sweep, tmp_path):
    out = tmp_path / "sub" / "report.html"
    r = kme_cli("report", str(sweep), "--out", str(out))
    assert r.code == 0, r
    assert str(out) in r.out
    text = out.read_text()
    p = Parsed(text)
    check_self_contained(p)
    assert p.rows["comparison"] == 2  # one row per run
    assert p.rows["edits"] == 2 * 4  # every request of every run
    body = "".join(p.text)
    assert "editors.0.params.scale" in body and "±" in body
    assert len(p.all("details")) == 2 and '"resolved"' in body  # each run's resolved config
    assert len(p.all("img")) >= 1  # the retention curves (sequential runs)
    assert "No run has causal-tracing locations" in body and "no scaling curves" in body
    assert len(p.all("script")) == 1 and "sortable" in text
    assert p.all("style")


def test_write_html_report_python_api(sweep, tmp_path):
    out = write_html_report([sweep / "scale-0.5"], tmp_path / "one.html")
    assert out == tmp_path / "one.html" and out.is_file()
    p = Parsed(out.read_text())
    assert p.rows["comparison"] == 1


def test_report_scaling_curves_and_causal_tracing_heat_maps(tmp_path):
    effects = {"hidden": {"subject_last": [0.1, 0.5, 0.2], "last": [0.0, 0.1, 0.3]},
               "mlp": {"subject_last": [0.4, 0.2, 0.1], "last": [0.0, 0.0, 0.1]}}
    loc = {"locator": "causal-tracing", "layers": [1, 2, 0], "modules": [], "neurons": {},
           "scores": {"mean_indirect_effect": effects, "ranked_by": "mlp at subject_last"}, "artifacts": []}
    edits = [{"case_id": i, "batch": 0, "editors": ["rome"], "metrics": {"acc": 1.0}, "baseline": {"acc": 0.0},
              "location": loc, "error": None} for i in range(3)]
    runs = []
    for ed in ("rome", "memit"):
        for n in (10, 100, 1000):
            v = 0.95 - (0.0001 if ed == "rome" else 0.0002) * n
            runs.append(fake_run(tmp_path / "sw" / f"{ed}-{n}",
                                 {"editors": [{"name": ed}], "protocol": {"mode": "batch", "num_edits": n}},
                                 {"acc": metric(v, [v - 0.02, v + 0.02], baseline=0.1)},
                                 edits if (ed, n) == ("rome", 10) else []))
    out = write_html_report([tmp_path / "sw"], tmp_path / "r.html")
    p = Parsed(out.read_text())
    check_self_contained(p)
    alts = [a.get("alt") or "" for a in p.all("img")]
    assert "scaling curves" in alts
    assert sum(a.startswith("causal trace") for a in alts) == 1  # one per batch
    body = "".join(p.text)
    assert "protocol.num_edits" in body and "editors.0.name" in body
    assert p.rows["edits"] == 3


def test_retention_png_uses_a_0_1_axis_for_rates(tmp_path, monkeypatch):
    import matplotlib.figure

    from kme.pipeline.report import write_retention

    class M:
        def __init__(self, name):
            self.name = name

    class RD:
        retention_json = tmp_path / "retention.json"
        retention_png = tmp_path / "retention.png"

    seen = {}

    def savefig(fig, path, **kw):
        seen.update({ax.get_title(): ax.get_ylim() for ax in fig.axes if ax.get_title()})

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    rows = [{"num_edits": n, "metrics": {"rate": r, "logprob": -n / 10}} for n, r in ((1, 1.0), (2, 0.99), (3, 0.98))]
    write_retention(RD(), rows, {"rate": [1.0, 1.0], "logprob": [-0.05, -0.05]}, [M("rate"), M("logprob")])
    lo, hi = seen["rate"]
    assert lo <= 0.0 and hi >= 1.0 and hi - lo < 1.1  # 1.00 -> 0.98 is a small step, not a collapse
    lo, hi = seen["logprob"]
    assert hi - lo < 1.0  # not a rate: autoscaled
    assert json.loads(RD.retention_json.read_text())["baseline"] == {"rate": 1.0, "logprob": -0.05}


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


#: Injected first in <head> of a copy of the report: records script errors and, after load,
#: how many images decoded and the sortable tables' row counts, as attributes the dumped DOM shows.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
const _ce = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); _ce(...a); };
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const b = document.body;
  b.setAttribute('data-images', imgs.length);
  b.setAttribute('data-decoded', imgs.filter(i => i.complete && i.naturalWidth > 0).length);
  b.setAttribute('data-errors', JSON.stringify(window.__errors));
  // sorting works: click the first sortable header and record the first cell before/after
  const th = document.querySelector('table.sortable thead th:nth-child(2)');
  if (th) { const cell = () => th.closest('table').querySelector('tbody tr td:nth-child(2)').textContent;
            const before = cell(); th.click(); th.click(); b.setAttribute('data-sorted', before + '|' + cell()); }
});
</script>"""


@pytest.mark.skipif(BROWSER is None, reason="no chromium / chromium-browser on PATH")
def test_report_dom_in_a_headless_browser(sweep, tmp_path):  # pragma: no cover - needs a browser
    out = write_html_report([sweep], tmp_path / "r.html")
    source = Parsed(out.read_text())
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("<head>", "<head>" + PROBE, 1))
    r = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                        "--dump-dom", probed.as_uri()], check=True, timeout=120, capture_output=True, text=True)
    dom = Parsed(r.stdout)
    body = dom.all("body")[0]
    assert json.loads(body["data-errors"]) == []  # no script errors, nothing on console.error
    n_img = len(source.all("img"))
    assert n_img >= 1 and body["data-images"] == body["data-decoded"] == str(n_img)  # every figure decodes
    assert {a.get("id") for a in dom.all("table")} >= {"comparison", "edits"}
    assert dom.rows == source.rows  # every table row the file holds is in the rendered page
    assert body.get("data-sorted")  # the sortable header ran its handler


@pytest.mark.skipif(BROWSER is None, reason="no chromium / chromium-browser on PATH")
def test_report_renders_in_a_headless_browser(sweep, tmp_path):  # pragma: no cover - needs a browser
    from PIL import Image

    out = write_html_report([sweep], tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,1600", out.as_uri()], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 50  # not blank
