"""Driving `clreg-sweep ui` and MLflow 3's web UI in headless Chromium (Debian's chromium + chromedriver, Selenium).

Used by the browser test and to regenerate the README's screenshots from a finished sweep (a quickstart's):

    .venv/bin/python -m tests.orchestrator.dashboard_pages SWEEP_DIR docs/images

The UI is a React app that renders long after the page loads, so every step waits (WebDriverWait) for the element
that shows it is done, found by what MLflow renders for it: run links by their `href` (`#/experiments/<id>/runs/
<run id>`) and run name, the artifact tree by `data-testid="artifact-tree-node"` and `artifact-name`, the image
preview by `alt="pareto/front.png"` and a decoded `naturalWidth`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from orchestrator.dashboard import sweep_target
from orchestrator.tracking import TAG_TRIAL
from tests.orchestrator.live_services import ui_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
VIEWPORT = (1400, 900)
PAGE_WAIT_S = 180.0  # the first render of the UI takes 10-20 s on a 2-core machine; more when it is busy
# Flags for a headless browser that reaches nothing but the dashboard: no sandbox (CI runs as root), no GPU, no
# background fetches (updates, sync, component downloads), and no QUIC.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}")
# Columns of the runs table to flip: the default attribute columns that are empty for a sweep off; the objectives,
# the `pareto` and `feasible` tags and the parameter the session's attacked sweep searches (its grid values print
# whole; a sampled learning rate such as 7.5e-05 would be cut to "7.50195444...") on.
TABLE_COLUMNS = ("Dataset", "Source", "Models", "forget_quality", "model_utility", "pareto", "feasible",
                 "train.lr")


@contextlib.contextmanager
def headless_chromium(profile_dir: Path) -> Iterator[WebDriver]:
    """Chromium driven by the system's chromedriver (never a driver Selenium Manager would download), with a
    fresh profile in `profile_dir` and a viewport of exactly `VIEWPORT` for screenshots."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        # --window-size sets the window, not the page area: fix the page area for screenshots of a known size.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


@dataclass
class SweepPages:
    """The pages of one sweep in the MLflow UI: its experiment, its parent run and the parent's Pareto artifact."""

    driver: WebDriver
    links: dict[str, str]  # as printed by `clreg-sweep ui`
    experiment_id: str
    parent_run_id: str
    timeout: float = PAGE_WAIT_S

    def open_experiment(self, sweep_name: str, child_run_ids: Sequence[str],
                        columns: Sequence[str] = TABLE_COLUMNS) -> dict[str, str]:
        """Open the experiment's runs table, show `columns`, expand the parent row and return the child runs it
        shows (run id -> name)."""
        self.driver.get(self.links["experiment"])
        parent = f"//a[@href='{self._run_href(self.parent_run_id)}'][normalize-space()='{sweep_name}']"
        self._visible(By.XPATH, parent)
        self._close_assistant()
        self._toggle_columns(columns)
        # The parent's row holds the expander of its child runs (the button of the run-name cell); located anew
        # after the columns changed, since the table re-renders its rows.
        expander = f"{parent}/ancestor::div[@role='row']//button[contains(@data-component-id, 'runnamecellrenderer')]"
        self._wait().until(ec.element_to_be_clickable((By.XPATH, expander))).click()
        return {run_id: self._visible(By.CSS_SELECTOR, f"a[href='{self._run_href(run_id)}']").text.strip()
                for run_id in child_run_ids}

    def open_parent_run(self, num_children: int) -> list[str]:
        """Open the printed parent-run link; return the names in its "Child runs" field once it lists
        `num_children`. (The table's own run link drops the "Model training" view, see `dashboard_links`.)"""
        self.driver.get(self.links["parent run"])
        children = "[data-testid='key-value-Child runs'] a"
        self._visible(By.CSS_SELECTOR, children)
        found = self._wait().until(lambda d: len(links := d.find_elements(By.CSS_SELECTOR, children)) >= num_children
                                   and links)
        return [a.text.strip() for a in found]

    def open_pareto_artifact(self) -> int:
        """Open the Artifacts tab, the `pareto` folder and `front.png`; return the decoded image's width (pixels)."""
        self._visible(By.XPATH, "//button[@role='tab'][normalize-space()='Artifacts']").click()
        self._visible(By.CSS_SELECTOR, "[data-testid='artifact-tree-node'][artifact-name='pareto']").click()
        self._visible(By.CSS_SELECTOR, "[data-testid='artifact-tree-node'][artifact-name='front.png']").click()
        image = self._visible(By.CSS_SELECTOR, "img[alt='pareto/front.png']")
        # The UI fetches the file through the server (get-artifact) into a blob: URL; a broken fetch or a file that
        # is not an image leaves naturalWidth at 0.
        return self._wait().until(lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image))

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        time.sleep(1.0)  # let spinners and fade-ins of the last render finish
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"could not save the screenshot {path}")
        return path

    def _run_href(self, run_id: str) -> str:
        return f"#/experiments/{self.experiment_id}/runs/{run_id}"

    def _close_assistant(self) -> None:
        """Close MLflow's assistant side panel (open by default): the runs and the plot get its width."""
        with contextlib.suppress(WebDriverException):
            WebDriverWait(self.driver, 10).until(ec.element_to_be_clickable(
                (By.CSS_SELECTOR, "button[data-component-id='mlflow.assistant.chat_panel.close']"))).click()

    def _toggle_columns(self, names: Sequence[str]) -> None:
        """Flip the runs table's columns `names` (attributes, metrics or params) in its "Columns" picker: each name
        is typed into the picker's search box, which leaves its tree node in view, and its checkbox clicked."""
        picker = "//button[@data-testid='column-selection-dropdown'][normalize-space()='Columns']"  # "Group by" too
        self._visible(By.XPATH, picker).click()
        search = self._visible(By.CSS_SELECTOR, "input[placeholder='Search columns']")
        for name in names:
            search.send_keys(Keys.CONTROL, "a", Keys.DELETE, name)
            self._visible(By.XPATH, f"//*[@data-testid='column-selector-tree']//div[contains(@class, 'tree-treenode')]"
                                    f"[.//span[contains(@class, 'tree-title')][normalize-space()='{name}']]"
                                    "//span[contains(@class, 'tree-checkbox')]").click()
        search.send_keys(Keys.ESCAPE)
        self._wait().until(ec.invisibility_of_element_located((By.CSS_SELECTOR, "input[placeholder='Search columns']")))

    def _visible(self, by: str, selector: str) -> WebElement:
        return self._wait().until(ec.visibility_of_element_located((by, selector)),
                                  f"{selector} not shown within {self.timeout:.0f} s on {self.driver.current_url}")

    def _wait(self) -> WebDriverWait:
        return WebDriverWait(self.driver, self.timeout, poll_frequency=0.5)


def capture_sweep(sweep_dir: Path, port: int, out_dirs: Sequence[Path], work_dir: Path) -> dict[str, object]:
    """Open a finished sweep's pages through `clreg-sweep ui` and save `dashboard-experiment.png`,
    `dashboard-parent-run.png` and `dashboard-pareto.png` to every directory of `out_dirs`. Returns what the pages
    showed, for the caller to check."""
    target = sweep_target(sweep_dir, Path.cwd())
    children = _child_runs(target.tracking_uri, target.experiment_id, target.parent_run_id)
    shown: dict[str, object] = {"expected_children": children}
    with ui_process(sweep_dir, port, work_dir) as ui, headless_chromium(work_dir / "chromium-profile") as driver:
        shown["links"] = ui.links
        pages = SweepPages(driver, ui.links, target.experiment_id, target.parent_run_id)
        shots: dict[str, list[Path]] = {}

        def save(name: str) -> None:
            shots[name] = [pages.screenshot(Path(d) / f"dashboard-{name}.png") for d in out_dirs]

        shown["experiment_children"] = pages.open_experiment(target.name, list(children))
        save("experiment")
        shown["parent_children"] = pages.open_parent_run(len(children))
        save("parent-run")
        shown["pareto_width"] = pages.open_pareto_artifact()
        save("pareto")
        shown["screenshots"] = shots
    return shown


def _child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """run id -> `clreg.trial_id` of the sweep's child runs, read from the store itself."""
    runs = MlflowClient(tracking_uri).search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return {run.info.run_id: run.data.tags[TAG_TRIAL] for run in runs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of a finished sweep in the MLflow UI (README images)")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clreg-screens-") as tmp:
        shown = capture_sweep(args.sweep_dir, args.port, [args.out_dir], Path(tmp))
    for name, paths in shown["screenshots"].items():
        for path in paths:
            print(f"{name}: {path} ({os.path.getsize(path) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
