"""The user's side in a real browser: `sweeps/ui.py` serves the store, headless Chromium shows the sweep.

Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them for the test command).
Screenshots go to test-output/ and are listed at the end of the test run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest
from conftest import ROOT, TEST_OUTPUT, free_port, mlflow_runs, run_cli
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=2200,1000"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def shows(driver, *texts: str, timeout: float = 60) -> None:
    """Wait until the page shows every text; on failure keep a screenshot and say what it showed."""
    try:
        WebDriverWait(driver, timeout).until(lambda d: all(t in page_text(d) for t in texts))
    except TimeoutException:
        screenshot(driver, "mlflow-ui-failure.png")
        pytest.fail(f"{driver.current_url} lacks {texts}; it shows: {page_text(driver)[:1500]!r}")


def screenshot(driver, name: str) -> None:
    TEST_OUTPUT.mkdir(exist_ok=True)
    driver.save_screenshot(str(TEST_OUTPUT / name))


def test_the_mlflow_ui_shows_the_sweep_in_headless_chromium(tmp_path, browser):
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, str(ROOT / "sweeps" / "ui.py"), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(ui.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("MLflow UI: ") for line in lines):
            assert ui.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        assert next(line for line in lines if line.startswith("MLflow UI: ")).startswith(f"MLflow UI: {base}")
        # The server runs without MLflow's GenAI job runner (8 more processes, which sweeps never use).
        tree = [" ".join(p.cmdline()) for p in psutil.Process(ui.pid).children(recursive=True)]
        assert any(" mlflow server " in cmd for cmd in tree) and len(tree) <= 2, tree
        assert not any("_job_runner" in cmd or "huey" in cmd for cmd in tree), tree

        sweep = run_cli(
            str(ROOT / "sweeps" / "smoke.yaml"),
            "--tracking-uri",
            base,
            "--storage-path",
            str(tmp_path / "ray"),
            cwd=tmp_path,
        )
        assert sweep.returncode == 0, sweep.stderr[-3000:]
        runs = mlflow_runs(base, "smoke")
        parent, exp_id = runs["sweep"][0].info.run_id, runs["sweep"][0].info.experiment_id

        # The experiment opens on its runs table: the parent run, and its trials once expanded.
        browser.get(f"{base}/#/experiments/{exp_id}?workflowType=machine_learning")
        shows(browser, "smoke (grid)")
        browser.find_element(By.XPATH, "//*[text()='smoke (grid)']/ancestor::*[@role='gridcell'][1]//button").click()
        shows(browser, "constant(value=0)", "uniform_fan_in(c=1)", "pytorch_default")
        # The Dataset column names each trial's data and its digest (MLflow's dataset inputs).
        digest = runs["trial"][0].inputs.dataset_inputs[0].dataset.digest
        shows(browser, "Dataset", f"fashion_mnist ({digest})")
        # The key params and metrics are columns of the table (MLflow 3.17 starts with attributes only;
        # "Columns" adds them, and the browser keeps the choice).
        browser.find_element(By.XPATH, "//*[contains(text(), 'Show more columns')]/ancestor::button[1]").click()
        search = browser.find_element(By.CSS_SELECTOR, "input[placeholder='Search columns']")
        for column in ("c", "val_accuracy", "test_accuracy"):
            search.send_keys(Keys.CONTROL, "a", Keys.BACK_SPACE, column)  # React ignores .clear()
            option = f"//span[contains(@class, 'tree-title')][normalize-space(.)='{column}']"
            browser.find_element(By.XPATH, option).click()
        search.send_keys(Keys.ESCAPE)
        headers = lambda d: [h.text for h in d.find_elements(By.CSS_SELECTOR, "[role='columnheader']")]  # noqa: E731
        wanted = {"c", "val_accuracy", "test_accuracy"}
        try:
            WebDriverWait(browser, 30).until(lambda d: wanted <= set(headers(d)))
        except TimeoutException:
            screenshot(browser, "mlflow-ui-failure.png")
            pytest.fail(f"column headers: {headers(browser)}")
        screenshot(browser, "mlflow-ui-runs.png")

        # The parent run: its description, and the report among its artifacts.
        browser.get(f"{base}/#/experiments/{exp_id}/runs/{parent}/artifacts?workflowType=machine_learning")
        shows(browser, "report", "sweep.yaml")
        browser.find_element(By.XPATH, "//*[text()='report']").click()
        shows(browser, "report.html", "report.md", "results.csv")
        browser.find_element(By.XPATH, "//*[text()='report.html']").click()  # MLflow previews it
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.TAG_NAME, "iframe"))
        time.sleep(2)  # let the preview paint its images
        screenshot(browser, "mlflow-ui-report.png")
    finally:
        ui.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)  # leave nothing running for the tests after this one
            raise
    assert code == 0 and "MLflow UI stopped" in "".join(lines)
    with pytest.raises(OSError):  # the server went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
