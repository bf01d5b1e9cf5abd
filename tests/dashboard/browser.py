"""Drives the Kai dashboard in headless Chromium (Debian's chromium + chromium-driver, PyPI selenium).

    browser.py URL SCREENSHOT_DIR VICTIM MEMBERS

Loads URL, waits until the page lists MEMBERS members, all `up`, with the ring drawn, and prints
`READY`. Then reads one line from stdin (the test kills VICTIM meanwhile) and waits until VICTIM's
row shows `suspect` or `down`; prints `SEEN <status>` and saves screenshots before and after.
Exits non-zero (with the page's text) if a step times out.
"""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

STEP_TIMEOUT = 60


def wait_for(what, driver, condition):
    deadline = time.time() + STEP_TIMEOUT
    while time.time() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception:  # the page may be re-rendering the element we read
            pass
        time.sleep(0.1)
    sys.stderr.write(f"timed out waiting for {what}; page text:\n{driver.find_element(By.TAG_NAME, 'body').text}\n")
    sys.exit(1)


def statuses(driver):
    rows = driver.find_elements(By.CSS_SELECTOR, "#members tbody tr")
    return {row.get_attribute("data-member"): row.find_element(By.CSS_SELECTOR, ".status").text for row in rows}


def main():
    url, shots, victim, members = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        wait_for(f"{members} members up", driver,
                 lambda: (s := statuses(driver)) and len(s) == members and all(v == "up" for v in s.values()))
        # One script reads the whole ring: the page redraws it now and then.
        buckets, colours = wait_for("the ring", driver, lambda: driver.execute_script(
            "const fills = [...document.querySelectorAll('#ring path.bucket')].map(p => p.getAttribute('fill'));"
            "return fills.length ? [fills.length, new Set(fills).size] : null;"))
        print(f"RING {buckets} buckets in {colours} colours", flush=True)
        wait_for("a point on the ops chart", driver,
                 lambda: driver.find_element(By.CSS_SELECTOR, "#chart-ops path").get_attribute("d"))
        driver.save_screenshot(f"{shots}/dashboard-healthy.png")
        print("READY", flush=True)
        sys.stdin.readline()
        seen = wait_for(f"{victim} to turn suspect or down", driver,
                        lambda: (s := statuses(driver).get(victim)) in ("suspect", "down") and s)
        driver.save_screenshot(f"{shots}/dashboard-{seen}.png")
        print(f"SEEN {seen}", flush=True)
    finally:
        driver.quit()


main()
