"""The course website, built by ``klcourse site`` and read in headless Chromium.

The test builds the site from the committed notebooks, serves it on the loopback address and crawls
it from the landing page, following every internal link. On every page it waits for MathJax and
checks that every formula was typeset without a TeX error and that no ``$…$`` was left as text,
and that every image loaded; on each notebook's page, that it shows as many figures as the notebook
has. Every internal link must lead to a page or file that the server has, and every ``#anchor`` to
an element of that page.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
import time
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import nbformat
import pytest
from chromium import chromium, free_port, require_browser

from klcourse.tools.site import (
    WIDGET_STATE,
    WIDGET_VIEW,
    build_site,
    landing_page,
    real_models_page,
    static_widgets,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site, served on 127.0.0.1: ``(base_url, pages, seconds to build)``."""
    require_browser()
    out = tmp_path_factory.mktemp("site") / "html"
    t0 = time.perf_counter()
    pages = build_site(ROOT, out, quiet=True)
    seconds = time.perf_counter() - t0
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        yield base, [p.relative_to(out).as_posix() for p in pages], seconds
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


# Waits for MathJax 2's first typesetting of the page to end (at once on a page without math).
MATHJAX_DONE = """const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.Hub) { done(false); }
else { MathJax.Hub.Register.StartupHook("End", () => done(true)); }"""

PAGE_FACTS = r"""
const inMath = e => e.closest('.MathJax, .MathJax_Display, .MathJax_Preview, script, pre, code, .highlight');
const leftover = [];
const main = document.querySelector('main') || document.body;
const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const text = n.textContent;
  if (!inMath(n.parentElement) && /\$[^$\s][^$]*\$|\\\(|\\\[/.test(text)) leftover.push(text.trim());
}
// Sphinx's math spans (MathJax 2 names a box of its own output .math too)
const math = [...document.querySelectorAll('main .math.notranslate')];
const errors = document.querySelectorAll('.MathJax .merror, .MathJax .noError, .MathJax_Error');
return {
  math: math.length,
  untypeset: math.filter(e => !e.querySelector('.MathJax')).map(e => e.textContent.slice(0, 80)),
  texErrors: [...errors].map(e => e.textContent),
  leftover: leftover,
  outputImages: document.querySelectorAll('main .cell_output img').length,
  brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
};
"""

STATUS = """const done = arguments[arguments.length - 1];
fetch(arguments[0], {method: 'HEAD'}).then(r => done(r.status), e => done(String(e)));"""


def _figures(page: str) -> int:
    """How many images a page of a notebook must show: its PNG outputs and those inside its widgets."""
    nb = nbformat.read(ROOT / "notebooks" / Path(page).with_suffix(".ipynb"), as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    shown = {o["data"][WIDGET_VIEW]["model_id"] for o in outputs if WIDGET_VIEW in o.get("data", {})}
    in_widgets = [
        o
        for m in state.values()
        if m["model_name"] == "OutputModel" and _shown_in(m, shown, state)
        for o in m["state"].get("outputs", [])
    ]
    return sum("image/png" in o.get("data", {}) for o in [*outputs, *in_widgets])


def _shown_in(model: dict, roots: set[str], state: dict) -> bool:
    """Whether ``model`` is one of the widgets displayed from ``roots`` (itself or a descendant)."""
    todo = list(roots)
    while todo:
        m = state.get(todo.pop())
        if m is model:
            return True
        if m is not None:
            todo += [c.removeprefix("IPY_MODEL_") for c in m["state"].get("children", [])]
    return False


def test_site_pages_render_math_figures_and_links(site, tmp_path):
    base, pages, build_seconds = site
    facts: dict[str, dict] = {}
    started = time.perf_counter()
    with chromium(tmp_path / "profile") as driver:
        driver.set_script_timeout(120)
        todo = ["index.html"]
        while todo:  # crawl every internal HTML page reachable from the landing page
            page = todo.pop()
            if page in facts:
                continue
            driver.get(urljoin(base, page))
            driver.execute_async_script(MATHJAX_DONE)
            # MathJax's startup can end with formulas of a long page still queued: give them 30 s
            settle = time.monotonic() + 30
            facts[page] = driver.execute_script(PAGE_FACTS)
            while facts[page]["untypeset"] and time.monotonic() < settle:
                time.sleep(0.25)
                facts[page] = driver.execute_script(PAGE_FACTS)
            for link in facts[page]["links"]:
                target = urlparse(urldefrag(link).url)
                path = target.path.lstrip("/") or "index.html"
                if link.startswith(base) and path.endswith(".html") and path not in facts:
                    todo.append(path)
        statuses = {}
        for f in facts.values():
            for link in f["links"]:
                url = urldefrag(link).url
                if link.startswith(base) and url not in statuses:
                    statuses[url] = driver.execute_async_script(STATUS, url)
    browse_seconds = time.perf_counter() - started

    assert set(pages) <= set(facts), f"pages not reachable from the landing page: {set(pages) - set(facts)}"
    problems = []
    for page, f in facts.items():
        problems += [f"{page}: formula not typeset: {t!r}" for t in f["untypeset"]]
        problems += [f"{page}: TeX error: {t!r}" for t in f["texErrors"]]
        problems += [f"{page}: math left as text: {t[:100]!r}" for t in f["leftover"]]
        problems += [f"{page}: image did not load: {src}" for src in f["brokenImages"]]
        for link in f["links"]:
            url, anchor = urldefrag(link)
            if not link.startswith(base):
                continue
            if statuses[url] != 200:
                problems.append(f"{page}: link to {link} answers {statuses[url]}")
            elif anchor and urlparse(url).path.endswith(".html"):
                target = urlparse(url).path.lstrip("/") or "index.html"
                if target in facts and anchor not in facts[target]["ids"]:
                    problems.append(f"{page}: link to {link}: no #{anchor} on {target}")
    chapters = [p for p in pages if p[:2].isdigit()]
    for page in chapters:
        if facts[page]["math"] == 0:
            problems.append(f"{page}: no math at all (MyST did not parse $…$?)")
        shown, expected = facts[page]["outputImages"], _figures(page)
        if shown != expected:
            problems.append(f"{page}: {shown} figures shown, the notebook has {expected}")
    assert not problems, "\n".join(problems)
    formulas = sum(f["math"] for f in facts.values())
    links = sum(len(f["links"]) for f in facts.values())
    print(
        f"site: {len(pages)} course pages ({len(facts)} crawled) built in {build_seconds:.1f} s; "
        f"{formulas} formulas typeset, {sum(_figures(p) for p in chapters)} figures, {links} links "
        f"({len(statuses)} distinct internal targets) checked in {browse_seconds:.1f} s"
    )


# ---------------------------------------------------------------- without a browser


def _widget_notebook() -> nbformat.NotebookNode:
    """A notebook with one saved ``interactive`` widget (a slider and an output holding a figure)
    and one widget whose state was not saved."""
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {
            "model_name": "FloatSliderModel",
            "state": {"description": "A heads", "value": 0.7, "min": 0.01, "max": 0.99, "step": 0.01},
        },
        "out": {
            "model_name": "OutputModel",
            "state": {"outputs": [{"output_type": "display_data", "data": png, "metadata": {}}]},
        },
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    view = {WIDGET_VIEW: {"model_id": "box"}, "text/plain": "interactive(children=…)"}
    lost = {WIDGET_VIEW: {"model_id": "gone"}, "text/plain": "HBox()"}
    outputs = [nbformat.v4.new_output("execute_result", data=d, execution_count=1) for d in (view, lost)]
    nb.cells.append(nbformat.v4.new_code_cell("coin_explorer()", outputs=outputs))
    return nb


def test_static_widgets_draw_the_saved_state():
    nb = _widget_notebook()
    assert static_widgets(nb) == 2
    outputs = nb.cells[0].outputs
    assert "widgets" not in nb.metadata
    mimes = [sorted(o.get("data", {})) for o in outputs]
    assert mimes == [["text/html"], ["image/png", "text/plain"], ["text/html"]], mimes
    assert "A heads" in outputs[0].data["text/html"] and "value='0.7'" in outputs[0].data["text/html"]
    assert "not saved" in outputs[2].data["text/html"]
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs)


def test_landing_page_has_the_course_map_setup_and_navigation():
    page = landing_page(ROOT)
    chapters = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert "## The course map" in page and "## Set up" in page
    assert "pip install" in page and "jupyter lab" in page
    for stem in chapters:
        assert f"]({stem}.ipynb) |" in page, f"{stem} is not linked from the course map"
    assert re.search(r"\| \d+ s \|", page), "the course map has no run times"
    order = [page.index(f"\n{stem}\n") for stem in chapters]
    assert order == sorted(order), "the navigation is not in course order"
    captions = [page.index(f":caption: {c}") for c in ("The course", "Reference", "Solutions")]
    assert captions == sorted(captions)
    assert page.index("\nreal-models\n") > page.index(":caption: Reference")
    real = real_models_page(ROOT)
    assert real.startswith("# Carry it to a real model") and "klcourse ppo --policy" in real
