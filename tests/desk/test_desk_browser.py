"""The desk in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium) logs in, loads the desk at 1440 px, and its screenshot is read back: the figures by
OCR (tesseract), the charts by their colours. Then a new price reaches the page without a
reload, and the header's switch turns the desk Korean.

Needs chromium, chromium-driver, tesseract and a Korean font: `make test` has
scripts/with-services.sh install them (AEGIS_TEST_TOOLS=1); where one is missing the test fails
and says so. AEGIS_DESK_SCREENSHOT=<path> keeps the screenshots (the
README's pictures, docs/img/)."""

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core import clock
from market.prices import best_price_write
from tests.desk.day import desk_day

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WIDTH, HEIGHT = 1440, 2400


@pytest.fixture
def browser():
    for tool in ("chromium", "chromedriver", "tesseract"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is missing: `make test` installs it (scripts/with-services.sh with "
                "AEGIS_TEST_TOOLS=1, as root)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH},{HEIGHT}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def ocr(png: Path) -> str:
    """The screenshot's text, digits kept with their signs; separators and spaces dropped."""
    big = png.with_suffix(".x2.png")
    with Image.open(png) as image:
        image.convert("L").resize((image.width * 2, image.height * 2)).save(big)
    out = subprocess.run(
        ["tesseract", str(big), "-", "--psm", "11"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return re.sub(r"[,\s]", "", out)


def colour_in(png: Path, box: dict, rgb: tuple[int, int, int]) -> int:
    """How many pixels of `box` (an element's rect) have the colour `rgb`, give or take."""
    with Image.open(png) as image:
        area = image.convert("RGB").crop(
            (box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"])
        )
        return sum(
            1
            for pixel in area.get_flattened_data()
            if all(abs(a - b) <= 24 for a, b in zip(pixel, rgb, strict=True))
        )


def test_the_desk_in_chromium_shows_pnl_positions_and_charts(
    browser, live_server, admin_user, new_symbol, tmp_path
):
    day = desk_day(new_symbol)
    browser.get(f"{live_server.url}/admin/login/?next=/admin/desk/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "desk-unrealised"))
    shot = tmp_path / "desk.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("AEGIS_DESK_SCREENSHOT"):  # docs/desk.png: the picture in the README
        shutil.copy(shot, os.environ["AEGIS_DESK_SCREENSHOT"])
    seen = ocr(shot)
    assert "-330000" in seen, seen
    assert f"{day['realized_net']:+.0f}" in seen, seen
    assert day["held"].symbol in seen and day["traded"].symbol in seen, seen
    assert "66700" in seen, seen
    # The board is replaced every few seconds: what it holds is read in one script, never
    # through elements found earlier.
    charts = browser.execute_script(
        "return [...document.querySelectorAll('svg.desk-chart')].map(c => {"
        "const r = c.getBoundingClientRect();"
        "return {x: r.x, y: r.y, width: r.width, height: r.height}; })"
    )
    assert len(charts) == 2
    for box in charts:
        assert box["width"] > 300 and box["y"] + box["height"] <= HEIGHT, box
        assert colour_in(shot, box, (0x34, 0x49, 0x5E)) > 50  # the price line
        assert colour_in(shot, box, (0x27, 0xAE, 0x60)) > 10  # an entry ▲
    assert colour_in(shot, charts[1], (0xC0, 0x39, 0x2B)) > 10  # the exit ▼

    # A new price: the board shows it within a refresh or two, without a reload.
    browser.execute_script("window.deskNotReloaded = true")
    best_price_write(
        symbol=day["held"].symbol,
        price=68_000,
        at=clock.now() + dt.timedelta(seconds=1),
        source="WS",
    )
    WebDriverWait(browser, 30, poll_frequency=0.5).until(
        lambda b: (
            b.execute_script("return document.getElementById('desk-unrealised').textContent")
            == "-200,000"
        )
    )
    assert browser.execute_script("return window.deskNotReloaded === true")  # not reloaded

    # The header's switch: the desk in Korean.
    browser.find_element(By.CSS_SELECTOR, "#language-switch button[value=ko]").click()
    WebDriverWait(browser, 30).until(
        lambda b: "평가손익" in b.execute_script("return document.body.innerText")
    )
    assert "오늘의 보유종목" in browser.execute_script("return document.body.innerText")
    if os.environ.get("AEGIS_DESK_SCREENSHOT"):
        browser.save_screenshot(os.environ["AEGIS_DESK_SCREENSHOT"].replace(".png", "-ko.png"))
