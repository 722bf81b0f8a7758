"""The page in a real browser (Debian's chromium, headless, driven by Playwright): train, stop, resume, and the
run's checkpoints on the Checkpoints tab; with an owner password, a visitor watches and only the owner controls.

Saves screenshots of the Train tab (resumed run, charts, Resume form with its LR preview) to
tests/artifacts/train_tab.png and of the Checkpoints tab (checkpoints with their run, the runs table) to
tests/artifacts/checkpoints_tab.png (test_browser_views.py takes every tab, and the README's screenshot).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_process import SMALL_MODEL, AppProcess, app, small_corpus  # noqa: F401
from gradio_client import Client
from playwright.sync_api import Browser, Page, expect, sync_playwright

from azr.config import PRESET_TRAINING, PRESETS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"
TARGET = 800  # long enough to press Stop before the end
RUN = "browser-run"
WAIT_MS = 120_000
PASSWORD = "owner's secret"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=WAIT_MS)  # a busy machine can take seconds per poll; a failure still shows
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app.url)
    expect(page.locator("#start")).to_be_visible()
    yield page
    page.close()


def uploaded(page, name: str):
    """The row of the corpus upload's file list naming ``name`` (gradio shows the name's stem and extension in
    separate spans, with a space between them in the text, so the cell is found by its accessible name)."""
    return page.locator("#corpus").get_by_role("cell", name=name, exact=True)


def fill_number(page: Page, elem_id: str, value: float) -> None:
    field = page.locator(f"#{elem_id} input")
    field.fill(str(value))
    field.press("Tab")


def wait_for_iteration(page: Page, at_least: int) -> None:
    """Wait until the status panel shows an iteration of at least ``at_least``."""
    page.wait_for_function("n => Number((/Iteration:\\s*(\\d+)/.exec(document.querySelector('#status').innerText)"
                           " || [0, 0])[1]) >= n", arg=at_least)


def iteration(page: Page) -> int:
    """The iteration the status panel shows."""
    match = re.search(r"Iteration:\s*(\d+)", page.locator("#status").inner_text())
    return int(match.group(1)) if match else 0


def test_train_stop_and_resume_in_the_page(page, browser, app, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(small_corpus())
    page.locator("#corpus input[type=file]").set_input_files(corpus)
    expect(uploaded(page, "corpus.txt")).to_be_visible()
    page.get_by_text("Model size (advanced)").click()
    page.get_by_text("Run settings").click()
    page.locator("#train-run-name textarea, #train-run-name input").first.fill(RUN)
    for name, value in SMALL_MODEL.items():
        fill_number(page, f"train-{name}", value)
    fill_number(page, "train-max-iterations", TARGET)
    fill_number(page, "train-batch-size", 4)
    fill_number(page, "train-save-every", 500)

    page.locator("#start").click()
    expect(page.locator("#train-message")).to_contain_text(f"Started run {RUN}: training to {TARGET} iterations")
    wait_for_iteration(page, 30)
    page.locator("#stop").click()
    expect(page.locator("#status")).to_contain_text("paused")
    stopped_at = iteration(page)
    assert 30 <= stopped_at < TARGET
    paused = f"{RUN}/model_paused_{stopped_at}"
    expect(page.locator("#status")).to_contain_text(paused)

    page.locator("#resume-choice input").click()
    page.get_by_role("option", name=paused).click()  # a substring of the label
    expect(page.locator("#resume-max input")).to_have_value(str(TARGET))
    fill_number(page, "resume-max", TARGET + 50)
    expect(page.locator("#lr-preview canvas, #lr-preview svg").first).to_be_visible()
    page.locator("#resume").click()
    expect(page.locator("#resume-message")).to_contain_text(f"Resuming {paused}")
    wait_for_iteration(page, stopped_at + 200)
    expect(page.locator("#loss-plot canvas, #loss-plot svg").first).to_be_visible()
    page.wait_for_timeout(1500)  # a few more polls, so that the charts are drawn
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "train_tab.png", full_page=True)

    expect(page.locator("#status")).to_contain_text("completed")
    assert iteration(page) == TARGET + 50
    expect(page.locator("#status")).to_contain_text(f"{RUN}/model_iter_{TARGET + 50}")

    page.get_by_role("tab", name="Checkpoints").click()  # the run and its checkpoints, each named <run>/<checkpoint>
    table = page.locator("#checkpoint-table")
    expect(table).to_contain_text(f"{RUN}/model_iter_{TARGET + 50}")
    expect(table).to_contain_text(paused)
    runs = page.locator("#runs-table")
    expect(runs).to_contain_text(RUN)
    listed = table.locator("[role=row]", has_text=f"{RUN}/").count()  # model_paused_<N> and the kept model_iter_*
    assert listed >= 2
    expect(runs.locator("[role=row]", has_text=RUN).locator("[role=gridcell]").nth(1)).to_have_text(str(listed))
    page.screenshot(path=ARTIFACTS / "checkpoints_tab.png", full_page=True)

    another_tab = browser.new_page()  # a second tab re-attaches to the same job, curves included
    another_tab.goto(app.url)
    expect(another_tab.locator("#status")).to_contain_text("completed")
    assert iteration(another_tab) == TARGET + 50
    expect(another_tab.locator("#loss-plot canvas, #loss-plot svg").first).to_be_visible()
    another_tab.close()


def test_choosing_a_preset_fills_in_its_size_and_learning_rate_and_leaves_the_warmup_to_it(page):
    page.get_by_text("Model size (advanced)").click()
    page.get_by_text("Run settings").click()
    warmup = page.locator("#train-warmup textarea, #train-warmup input").first
    expect(warmup).to_have_value("")  # empty: the preset's, at most half the run
    for name in ("small", "tiny"):  # the page opens on tiny: away from it and back
        fill_number(page, "train-lr", 0.5)  # changed by hand, then replaced by the preset's
        warmup.fill("7")
        warmup.press("Tab")
        page.locator("#train-preset input").click()
        page.get_by_role("option", name=name, exact=True).click()
        expect(page.locator("#train-d_model input")).to_have_value(str(PRESETS[name].d_model))
        expect(page.locator("#train-lr input")).to_have_value(f"{PRESET_TRAINING[name]['lr']:g}")
        expect(warmup).to_have_value("")
        expect(warmup).to_have_attribute("placeholder", "the preset's, at most half the run")


def test_generate_with_an_empty_seed_gives_new_text_each_time_and_a_seed_the_same(page, app):
    client = Client(app.url, verbose=False)
    client.predict(corpus_text=small_corpus(), max_iterations=10, batch_size=4, api_name="/train", **SMALL_MODEL)
    page.wait_for_function("() => /completed/.test(document.querySelector('#status').innerText)")
    page.get_by_role("tab", name="Generate").click()
    seed = page.locator("#generate-seed textarea, #generate-seed input").first
    expect(seed).to_have_value("")
    expect(seed).to_have_attribute("placeholder", "random")
    page.locator("#generate-choice input").click()
    page.get_by_role("option").first.click()
    text = page.locator("#generate-text textarea")

    def generate(prompt: str = "ROMEO:") -> str:  # after another prompt's text, so the new text shows it is done
        if text.input_value().startswith(prompt):
            generate("JULIET:")
        page.locator("#generate-prompt textarea").fill(prompt)
        page.locator("#generate").click()
        expect(text).to_have_value(re.compile("^" + re.escape(prompt)))
        return text.input_value()

    assert generate() != generate()
    seed.fill("7")
    seed.press("Tab")
    assert generate() == generate()


def test_bad_numbers_get_a_message_next_to_the_form(page):
    fill_number(page, "train-batch-size", 0)
    page.locator("#start").click()
    expect(page.locator("#train-message")).to_contain_text("batch_size must be a positive integer")


@pytest.fixture(scope="module")
def owned(tmp_path_factory) -> Iterator[AppProcess]:
    """The app with an owner password."""
    process = AppProcess.start(tmp_path_factory.mktemp("owned"), AZR_OWNER_PASSWORD=PASSWORD)
    yield process
    process.stop()


def test_a_visitor_watches_and_only_the_owner_controls(browser, owned, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(owned.url)
    expect(page.locator("#owner-note")).to_contain_text("Visitors can watch")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(small_corpus())
    page.locator("#corpus input[type=file]").set_input_files(corpus)
    expect(uploaded(page, "corpus.txt")).to_be_visible()
    page.get_by_text("Model size (advanced)").click()
    for name, value in SMALL_MODEL.items():
        fill_number(page, f"train-{name}", value)
    fill_number(page, "train-max-iterations", 100_000)
    fill_number(page, "train-batch-size", 4)
    password = page.locator("#owner-password input")

    def as_visitor_then_owner(button: str, message: str, refused: str) -> None:
        password.fill("")
        page.locator(f"#{button}").click()
        expect(page.locator(f"#{message}")).to_contain_text(f"Only the app's owner can {refused}")
        password.fill(PASSWORD)
        page.locator(f"#{button}").click()

    as_visitor_then_owner("start", "train-message", "start training")
    expect(page.locator("#train-message")).to_contain_text("Started run")
    wait_for_iteration(page, 5)
    as_visitor_then_owner("stop", "train-message", "stop training")
    expect(page.locator("#status")).to_contain_text("paused")
    paused = re.search(r"run-[\w-]+/model_paused_\d+", page.locator("#status").inner_text()).group(0)

    page.get_by_role("tab", name="Checkpoints").click()
    page.locator("#manage-choice input").click()  # the run has a model_best too: choose the paused one
    page.get_by_role("option", name=paused).click()
    expect(page.locator("#manage-choice input")).to_have_value(re.compile("model_paused_"))
    password.fill("")
    page.locator("#delete").click()
    page.locator("#confirm-delete").click()
    expect(page.locator("#manage-message")).to_contain_text("Only the app's owner can delete checkpoints")
    password.fill(PASSWORD)
    page.locator("#delete").click()
    page.locator("#confirm-delete").click()
    expect(page.locator("#manage-message")).to_contain_text(f"Deleted {paused}")
    page.close()
