"""The GUI in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium).

Skipped when Chromium, its driver or Selenium is missing, except under CI (``CI`` set),
where a missing install fails the run. Screenshots go to ``$ISONET_GUI_ARTIFACTS`` or
``tests/gui/artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("ISONET_GUI_ARTIFACTS") or Path(__file__).with_name("artifacts"))
TIMEOUT = 120


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists()):
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium; skipped when not installed, a failure when not installed under CI."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = TIMEOUT):
    """Wait until ``condition(driver)`` is truthy and return its value."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the page re-renders lists every second: an element found may be replaced before it is read
    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def css(driver, selector: str):
    """The first element matching a CSS selector."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def fill(element, text: str) -> None:
    """Replace an input's text as a user types it."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def run_form(driver, command: str, **fields: str) -> None:
    """Fill fields of a command's form and press its Run button."""
    form = css(driver, f'form[data-command="{command}"]')
    for name, value in fields.items():
        fill(form.find_element("name", name), value)
    button = form.find_element("css selector", f'button[data-run="{command}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()


def finished_job(driver, job_id: str) -> str:
    """Wait for job ``job_id`` in the page's job list to finish; return ``state: command line, last line``."""
    return wait(driver, lambda d: d.execute_script(
        f"const li = document.querySelector('#job-list li[data-job=\"{job_id}\"]');"
        "return li && ['done', 'failed', 'cancelled'].includes(li.dataset.state) && "
        "`${li.dataset.state}: ${li.querySelector('.cmd').textContent}, ${li.lastChild.textContent}`"))


def screenshot(driver, name: str) -> Path:
    """Save a screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_page_loads_with_forms_from_the_schema(browser, server):
    """The page opens with its token, lists the project and builds every form with the CLI's defaults."""
    browser.get(server.url)
    wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="refine"]'))
    assert str(server.project) in css(browser, "#project").text
    form = css(browser, 'form[data-command="deconv"]')
    assert form.find_element("name", "voltage").get_attribute("value") == "300.0"
    assert form.find_element("name", "star_file").get_attribute("value") == "tomograms.star"


def test_workflow_through_the_page(browser, server, project):
    """prepare_star, a row added by hand, deconv and make_mask run from the page; the viewer shows a slice."""
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="prepare_star"]'))

    run_form(browser, "prepare_star", folder_name="sim/tomos", defocus="20000")
    state = finished_job(browser, "0001")
    assert state.startswith("done"), state
    wait(browser, lambda d: d.find_elements("css selector", '#star-table input[data-row="0"]'))

    css(browser, "#row-insert").click()  # add a tomogram by hand
    fill(css(browser, '#star-table input[data-row="1"][data-col="rlnMicrographName"]'), "extra/other.mrc")
    fill(css(browser, '#star-table input[data-row="1"][data-col="rlnDefocus"]'), "20000")
    css(browser, "#star-save").click()
    wait(browser, lambda d: "2 row(s)" in css(d, "#star-status").text and "unsaved" not in css(d, "#star-status").text)

    run_form(browser, "make_mask", patch_size="0")  # bad input: the CLI's message, no job
    error = wait(browser, lambda d: css(d, 'form[data-command="make_mask"] [data-role="form-error"]').text)
    assert "Error: --patch_size 0: Input should be greater than or equal to 1" in error
    fill(css(browser, 'form[data-command="make_mask"]').find_element("name", "patch_size"), "4")

    run_form(browser, "deconv")
    state = finished_job(browser, "0002")
    assert state.startswith("done"), state
    run_form(browser, "make_mask")
    state = finished_job(browser, "0003")
    assert state.startswith("done: #0003 make_mask tomograms.star,"), state  # default options are left out
    wait(browser, lambda d: "mask" in css(d, '#star-table input[data-row="1"][data-col="rlnMaskName"]')
         .get_attribute("value"))
    screenshot(browser, "preparation")

    css(browser, '#tabs button[data-page="viewer"]').click()
    wait(browser, lambda d: len(Select(css(d, "#view-row")).options) == 2)
    Select(css(browser, "#view-row")).select_by_value("2")
    wait(browser, lambda d: "deconvolved" in [o.text for o in Select(css(d, "#view-volume")).options])
    Select(css(browser, "#view-volume")).select_by_value("deconvolved")
    css(browser, "#view-overlay").click()
    css(browser, '#view-axes button[data-axis="y"]').click()
    width = wait(browser, lambda d: d.execute_script(
        "const i = document.querySelector('#view-image');"
        "return i.complete && i.src.includes('overlay=') && i.src.includes('axis=y') && i.naturalWidth"))
    assert width == 48
    assert css(browser, "#view-message").text == ""
    # one contrast window per volume (editable), a scale bar in Å, the overlay's legend, coordinates in Å
    assert css(browser, "#view-low").get_attribute("value") and css(browser, "#view-high").get_attribute("value")
    wait(browser, lambda d: not css(d, "#view-scalebar").get_attribute("class").endswith("hidden"))
    assert css(browser, "#view-scalebar span").text.endswith(("Å", "nm"))
    assert css(browser, "#view-legend").is_displayed()
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element(css(browser, "#view-image")).perform()
    wait(browser, lambda d: "Å" in css(d, "#view-coords").text)
    fill(css(browser, "#view-slab"), "5")
    css(browser, "#view-slab").send_keys("\n")
    wait(browser, lambda d: "slab=5" in css(d, "#view-image").get_attribute("src"))
    assert screenshot(browser, "viewer").stat().st_size > 0
    assert (project / "tomograms.star").exists() and (project / "mask" / "other_mask.mrc").exists()

    # the values last run are remembered for this project, and "Defaults" forgets them
    browser.refresh()
    form = wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="prepare_star"]'))[0]
    assert form.find_element("name", "folder_name").get_attribute("value") == "sim/tomos"
    assert form.find_element("name", "defocus").get_attribute("value") == "20000"
    button = form.find_element("xpath", './/button[text()="Defaults"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    form = css(browser, 'form[data-command="prepare_star"]')
    assert form.find_element("name", "defocus").get_attribute("value") != "20000"
    browser.refresh()
    form = wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="prepare_star"]'))[0]
    assert form.find_element("name", "folder_name").get_attribute("value") == ""


def test_refine_form_is_grouped_and_shows_its_command(browser, server):
    """The refine form shows its options in the groups of `refine --help` (the first open, the others folded),
    labels in words with the option name beside them, and the command it runs, updated as values change."""
    browser.get(server.url)
    form = wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="refine"]'))[0]
    css(browser, '#tabs button[data-page="refine"]').click()
    groups = form.find_elements("css selector", "details.option-group")
    names = [g.get_attribute("data-group") for g in groups]
    assert names[:2] == ["Run", "Network"] and "Even/odd halves (n2n)" in names
    assert groups[0].get_attribute("open") is not None and groups[1].get_attribute("open") is None
    label = form.find_element("css selector", 'label[for$="iterations"]').get_attribute("textContent")
    assert "Iterations" in label and "--iterations" in label
    browser.execute_script("arguments[0].closest('details.card').open = true; arguments[0].scrollIntoView()", form)
    preview = form.find_element("css selector", '[data-role="command"]')
    wait(browser, lambda d: preview.get_attribute("textContent").startswith("isonet-pl refine "))
    fill(form.find_element("name", "iterations"), "7")
    wait(browser, lambda d: "--iterations 7" in preview.get_attribute("textContent"))
    screenshot(browser, "refine_form_groups")


def test_refine_form_shows_the_fields_of_the_method_that_will_run(browser, server, project):
    """Subtomograms with halves: the even/odd group shows and the single-tomogram group hides; without halves the
    reverse; --method n2n shows the even/odd group whatever the file; the loss plot stays in view (sticky)."""
    (project / "halves.star").write_text("data_\n\nloop_\n_rlnImageName #1\n_rlnImageNameHalf1 #2\n"
                                         "_rlnImageNameHalf2 #3\na.mrc\th1/a.mrc\th2/a.mrc\n")
    (project / "single.star").write_text("data_\n\nloop_\n_rlnImageName #1\na.mrc\n")
    browser.get(server.url)
    form = wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="refine"]'))[0]
    css(browser, '#tabs button[data-page="refine"]').click()

    def shown(group):
        return form.find_element("css selector", f'details[data-group="{group}"]').is_displayed()

    def choose(star, method=""):
        browser.execute_script(
            "const f = arguments[0]; f.elements.subtomo_star.value = arguments[1];"
            "f.elements.method.value = arguments[2]; f.elements.method.dispatchEvent(new Event('change'));"
            "f.elements.subtomo_star.dispatchEvent(new Event('change'));", form, star, method)

    choose("halves.star")
    wait(browser, lambda d: form.get_attribute("data-method") == "n2n")
    assert shown("Even/odd halves (n2n)") and not shown("Single tomogram (isonet)")
    choose("single.star")
    wait(browser, lambda d: form.get_attribute("data-method") == "isonet")
    assert not shown("Even/odd halves (n2n)") and shown("Single tomogram (isonet)")
    choose("single.star", "n2n")
    wait(browser, lambda d: form.get_attribute("data-method") == "n2n")
    assert shown("Even/odd halves (n2n)")
    choose("missing.star")
    wait(browser, lambda d: form.get_attribute("data-method") == "")
    assert shown("Even/odd halves (n2n)") and shown("Single tomogram (isonet)")
    assert browser.execute_script("return getComputedStyle(document.querySelector('#loss-card')).position") == \
        "sticky"
    screenshot(browser, "refine_form_method_groups")


def test_prediction_form_follows_the_newest_finished_refine(browser, server, project):
    """The Prediction form kept an older run's model (remembered from the last predict) after a new refine
    finished; it now takes the newest model and says which."""
    import os

    old, new = project / "results_b" / "model_iter09.ckpt", project / "results_a" / "model_iter02.ckpt"
    for i, path in enumerate((old, new)):
        path.parent.mkdir()
        path.write_bytes(b"x")
        os.utime(path, (1_700_000_000 + i * 1000,) * 2)
    browser.get(server.url)
    form = wait(browser, lambda d: d.find_elements("css selector", 'form[data-command="predict"]'))[0]
    wait(browser, lambda d: form.find_element("name", "model").get_attribute("value") == "results_a/model_iter02.ckpt")
    assert "newest finished refine" in form.find_element("css selector", "[data-role=model-hint]").get_attribute(
        "textContent")
