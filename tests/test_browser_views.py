"""Every tab of the page in a real browser (Chromium, as in test_browser.py) at 1400 and 800 px wide, and what its DOM
shows of the layout: no "NaN" axis label, x labels that do not touch, checkbox labels not clipped, tables with
headers for people, a status table that does not break words, an LR preview that ends at a newly typed target, the
Runs view with two runs on one chart, the estimated memory of the 135m preset, and no font from another site.

The screenshots are kept in test-artifacts/screenshots/ (git-ignored); the README's screenshot
(space_config/screenshot.png) is taken here too, so it shows the page as it is.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from app_process import ROOT, SMALL_MODEL, app, small_corpus  # noqa: F401
from gradio_client import Client
from gradio_client.exceptions import AppError
from playwright.sync_api import Page, expect
from test_browser import WAIT_MS, browser, fill_number  # noqa: F401

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
README_SCREENSHOT = ROOT / "space_config" / "screenshot.png"
WIDTHS = (1400, 800)
TABS = ("Train", "Checkpoints", "Generate", "Runs", "Hub settings")
RUNS = {"run-a": 120, "run-b": 60}  # name -> iterations

# For each chart on view (or in the element of the id given): its x axis's description (vega's aria-label), its
# labels and the boxes of those shown (vega hides the labels that would overlap with opacity 0).
X_AXES = """(id) => [...document.querySelectorAll(id ? `#${id} svg` : 'svg')]
  .filter(svg => svg.getBoundingClientRect().width > 0)
  .map(svg => [...svg.querySelectorAll('[aria-roledescription=axis]')]
    .filter(axis => (axis.getAttribute('aria-label') || '').startsWith('X-axis')))
  .flat().map(axis => { const labels = [...axis.querySelectorAll('.role-axis-label text')];
    return {label: axis.getAttribute('aria-label'), texts: labels.map(t => t.textContent), ticks: labels
      .filter(t => getComputedStyle(t).opacity !== '0' && t.getAttribute('opacity') !== '0')
      .map(t => { const box = t.getBoundingClientRect(); return {text: t.textContent, left: box.left,
                                                               right: box.right}; })}; })"""
GAP_PX = 2  # the least room between two x labels
CLIPPED_CHECKBOXES = """() => [...document.querySelectorAll('input[type=checkbox]')]
  .filter(box => box.getBoundingClientRect().width > 0).map(box => box.closest('label'))
  .filter(label => [label, label.parentElement, label.closest('.block')]
    .some(e => e && e.scrollWidth > e.clientWidth + 1)).map(label => label.innerText)"""
COVERED_DROPDOWNS = """() => [...document.querySelectorAll('input[role=combobox]')].filter(input => {
  const icon = input.parentElement.querySelector('.icon-wrap');
  if (!icon || !input.offsetWidth || !icon.offsetWidth) return false;
  const textEnd = input.getBoundingClientRect().right - parseFloat(getComputedStyle(input).paddingRight);
  return textEnd > icon.getBoundingClientRect().left + 1; }).map(input => input.value)"""  # text under the arrow
BROKEN_CELLS = """(cells) => [...document.querySelectorAll(cells)].filter(cell => {
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT); const lines = [];
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    if (!text.textContent.trim()) continue;
    const range = document.createRange(); range.selectNodeContents(text);
    lines.push(new Set([...range.getClientRects()].map(r => Math.round(r.top))).size); }
  return lines.some(n => n > 1); }).map(c => c.innerText)"""  # cells with a text broken over lines


def wait_done(client: Client) -> None:
    deadline = time.monotonic() + 300
    while client.predict(history_since=-1, api_name="/status")["is_training"]:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def two_runs(client) -> dict[str, int]:
    for name, iterations in RUNS.items():
        client.predict(corpus_text=small_corpus(), max_iterations=iterations, batch_size=4, run_name=name,
                       api_name="/train", **SMALL_MODEL)
        wait_done(client)
    return RUNS


@pytest.fixture
def open_page(browser, app) -> Iterator:
    pages = []

    def opened(width: int = 1400) -> Page:
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        pages.append(page)
        page.goto(app.url)
        expect(page.locator("#start")).to_be_visible()
        return page
    yield opened
    for page in pages:
        page.close()


def check_axes(page: Page) -> list[dict]:
    """Assert that no chart on view labels its x axis "NaN" or lets two labels touch; return the axes."""
    axes = page.evaluate(X_AXES)
    for axis in axes:
        assert axis["texts"] and "NaN" not in axis["label"] and "NaN" not in axis["texts"], axis
        ticks = sorted(axis["ticks"], key=lambda t: t["left"])
        assert all(a["right"] + GAP_PX <= b["left"] for a, b in zip(ticks, ticks[1:])), f"x labels touch: {axis}"
    return axes


def axis_ends_at(page: Page, elem_id: str, end: int) -> None:
    """Wait until the x axis of chart ``elem_id`` ends at ``end``: its last label, just inside the axis's end."""
    def last_label() -> float | None:
        axes = page.evaluate(X_AXES, elem_id)
        return max((float(t) for t in axes[0]["texts"]), default=None) if axes else None
    deadline = time.monotonic() + WAIT_MS / 1000
    while last_label() != end:
        note = page.locator(f"#{elem_id}-note")  # what the chart's note says (a failed preview says why)
        assert time.monotonic() < deadline, (f"the x axis of {elem_id} ends at {last_label()}, not {end}; its note: "
                                             f"{note.inner_text() if note.count() else None!r}")
        page.wait_for_timeout(200)


def test_the_empty_page_labels_no_axis_nan_and_fetches_nothing_from_other_sites(open_page, app):
    requests: list[str] = []
    page = open_page(1400)
    page.on("request", lambda request: requests.append(request.url))
    page.reload()
    expect(page.locator("#loss-plot svg").first).to_be_visible()
    expect(page.locator("#loss-plot")).to_contain_text("No points yet")
    page.wait_for_timeout(1000)
    assert check_axes(page)
    assert [url for url in requests if not url.startswith((app.url, "data:", "blob:"))] == []


def test_every_tab_at_both_widths(open_page, two_runs):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page = open_page(width)
        expect(page.locator("#loss-plot")).to_contain_text("val loss")  # the finished run's curves
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            show_tab(page, tab, width)
            assert page.evaluate("() => document.scrollingElement.scrollWidth <= innerWidth")  # no sideways page
            check_axes(page)
            assert page.evaluate(CLIPPED_CHECKBOXES) == []
            assert page.evaluate(COVERED_DROPDOWNS) == []
            path = SCREENSHOTS / f"{width}px-{tab.lower().replace(' ', '-')}.png"
            page.screenshot(path=path, full_page=True)
    print(f"screenshots: {SCREENSHOTS}")


def show_tab(page: Page, tab: str, width: int) -> None:
    """Open what the tab hides and check what it shows."""
    if tab == "Train":
        page.get_by_text("Run settings").click()
        expect(page.locator("#train-compile")).to_be_visible()
        assert page.evaluate(BROKEN_CELLS, "#status th, #status td") == []
    elif tab == "Checkpoints":
        for table in ("#checkpoint-table", "#runs-table"):
            expect(page.locator(table)).to_contain_text("run-a")
            headers = page.locator(f"{table} th").all_inner_texts()
            assert headers and not any("_" in h for h in headers), headers
            assert page.evaluate(BROKEN_CELLS, f"{table} th") == []
            assert page.locator(table).evaluate("t => t.scrollWidth <= Math.min(t.clientWidth + 1, 1400)")
        hidden = [] if width < 1400 else page.locator("#checkpoint-table").evaluate(  # out of the table's box
            "t => [...t.querySelectorAll('th')].filter(th => th.getBoundingClientRect().right"
            " > t.getBoundingClientRect().right + 1).map(th => [th.innerText, th.getBoundingClientRect().right,"
            " t.getBoundingClientRect().right])")
        assert hidden == [], hidden
    elif tab == "Runs":
        for name in RUNS:
            page.locator("#compare-choice").get_by_label(name).check()
        for chart in ("compare-loss", "compare-val-loss", "compare-lr"):  # one line per run, in one chart
            expect(page.locator(f"#{chart} svg").first).to_contain_text("run-a")
            expect(page.locator(f"#{chart} svg").first).to_contain_text("run-b")
        axis_ends_at(page, "compare-loss", max(RUNS.values()))


def test_the_lr_preview_ends_at_a_newly_typed_target(open_page, two_runs):
    page = open_page(1400)
    page.locator("#resume-choice input").click()
    page.get_by_role("option", name="run-a/model_iter_120").click()
    expect(page.locator("#resume-max input")).to_have_value("120")
    axis_ends_at(page, "lr-preview", 120)
    for target in (500, 300):
        fill_number(page, "resume-max", target)
        axis_ends_at(page, "lr-preview", target)  # at once, without resizing the window
    expect(page.locator("#lr-preview svg").first).to_contain_text("planned")
    check_axes(page)
    page.evaluate("() => document.activeElement.blur()")
    page.mouse.move(0, 0)  # no chart's hover mark in the picture
    page.wait_for_timeout(1000)
    page.screenshot(path=README_SCREENSHOT, full_page=True)
    print(f"README screenshot: {README_SCREENSHOT}")


def test_the_135m_preset_shows_its_estimated_memory(open_page, client):
    page = open_page(1400)
    expect(page.locator("#memory-estimate")).to_contain_text("0.4 M parameters")  # tiny
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="135m", exact=True).click()
    expect(page.locator("#memory-estimate")).to_contain_text("134.5 M parameters")
    expect(page.locator("#memory-estimate")).to_contain_text(re.compile(r"weights \+ AdamW state 1\.6\d GB"))
    expect(page.locator("#memory-estimate")).not_to_contain_text("background save")  # a CPU saves via the page cache
    page.get_by_text("Model size (advanced)").click()
    fill_number(page, "train-num_layers", 15)  # a size typed by hand: 15 of the 30 layers
    expect(page.locator("#memory-estimate")).to_contain_text("81.4 M parameters")
    expect(page.locator("#memory-estimate")).not_to_contain_text("free on this machine")
    fill_number(page, "train-batch-size", 100_000)  # terabytes of activations: more than this machine has
    expect(page.locator("#memory-estimate")).to_contain_text(re.compile(r"free on this machine: a batch of \d+ fits"))
    estimate = client.predict(preset="135m", api_name="/estimate_memory")
    assert 134.4e6 < estimate["parameters"] < 134.6e6 and 1.55e9 < estimate["weights_and_optimizer_bytes"] < 1.65e9
    assert estimate["staged_copy_bytes"] == 0


def test_compare_runs_returns_each_runs_curves(client, two_runs):
    runs = client.predict(runs=list(RUNS), api_name="/compare_runs")["runs"]
    assert [run["run"] for run in runs] == list(RUNS)
    for run, iterations in zip(runs, RUNS.values()):
        assert [i for i, _ in run["loss"]] == list(range(1, iterations + 1))
        assert [i for i, _ in run["lr"]] == list(range(1, iterations + 1))
        assert run["val_loss"] and run["val_loss"][-1][0] == iterations
    with pytest.raises(AppError, match="no run"):
        client.predict(runs=["run-c"], api_name="/compare_runs")

