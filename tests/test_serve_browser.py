"""The page of `speechdraw serve` in a real headless browser (Debian's chromium, driven by selenium through its
chromedriver) against a real server on 127.0.0.1: upload a recording through the file input and see its transcript,
word timings and subtitles; upload a text file and see the server's message; pick a file over the limit and see it
refused; record through MediaRecorder (chromium's fake microphone plays the recording) and see a transcript; click
Draw and see the GIF and the glimpse frames. Skipped, saying why, where chromium, chromedriver or selenium is missing
(`make install` installs them)."""

from __future__ import annotations

import shutil

import pytest
from test_serve import LIMIT, build_releases, start_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                "make install does it)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 60  # seconds: generous, the 2-core test machine is shared


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_releases(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def server(files):
    server = start_server(files["speech"], files["draw"])
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser(files):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--use-fake-ui-for-media-stream",  # allow the microphone without asking
                "--use-fake-device-for-media-stream",  # ... and make it play this file
                f"--use-file-for-fake-audio-capture={files['wav']}"):
        options.add_argument(arg)
    # The driver given by path: selenium-manager would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_for_text(driver, element_id: str) -> str:
    WebDriverWait(driver, WAIT).until(lambda d: text_of(d, element_id).strip())
    return text_of(driver, element_id)


def upload(driver, path) -> None:
    """Choose `path` in the file input and press Transcribe; wait until the answer (result or error) is shown."""
    driver.execute_script("document.getElementById('asr-result').hidden = true;"
                          "document.getElementById('asr-error').textContent = '';")
    driver.find_element(By.ID, "audio-file").send_keys(str(path))
    driver.find_element(By.ID, "transcribe").click()
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.ID, "asr-result").is_displayed() or text_of(d, "asr-error"))


def test_the_page_transcribes_refuses_records_and_draws(browser, server, files, tmp_path):
    from speechdraw.asr.transcribe import Transcriber

    expected = Transcriber(files["speech"], device="cpu").transcribe(files["wav"])
    browser.get(server.url)
    assert "speech: speech" in wait_for_text(browser, "models")

    # A recording, uploaded: its transcript, one table row per word, subtitles.
    upload(browser, files["wav"])
    assert text_of(browser, "asr-error") == ""
    assert text_of(browser, "transcript") == expected.text and expected.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#words tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [w.word for w in expected.words]
    srt = browser.execute_script("return document.getElementById('srt').textContent")
    assert srt.startswith("1\n00:00:") and expected.text.split()[0] in srt
    assert browser.find_element(By.ID, "dl-vtt").get_attribute("download") == "hello.vtt"
    assert "hello.wav" in text_of(browser, "asr-status")

    # Not audio: the server's message, on the page.
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes, not sound\n" * 20)
    upload(browser, notes)
    assert text_of(browser, "asr-error").startswith("notes.txt: not audio this server can decode: ")
    assert not browser.find_element(By.ID, "asr-result").is_displayed()

    # Over the limit: refused on the page, with the same wording as the server's 413.
    big = tmp_path / "long.wav"
    big.write_bytes(files["wav"].read_bytes() * (LIMIT // files["wav"].stat().st_size + 1))
    upload(browser, big)
    assert text_of(browser, "asr-error").startswith("long.wav: too large (0.23 MB; this server takes at most 0.19 MB)")

    # Recording: chromium's fake microphone plays the test recording; MediaRecorder -> WAV -> transcript.
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, WAIT).until(lambda d: "recording" in text_of(d, "asr-status"))
    browser.execute_script("return new Promise((r) => setTimeout(r, 2500))")
    browser.find_element(By.ID, "stop").click()
    WebDriverWait(browser, WAIT).until(lambda d: "recording.wav:" in text_of(d, "asr-status") or
                                       text_of(d, "asr-error"))
    assert text_of(browser, "asr-error") == ""
    seconds = float(text_of(browser, "asr-status").split()[1])  # "recording.wav: 2.60 s of audio in ..."
    assert 1.5 <= seconds <= 6.0, text_of(browser, "asr-status")  # about the 2.5 s recorded, as 16 kHz WAV
    assert text_of(browser, "transcript")  # random weights: some text, or the page's "(no words recognised)"

    # Drawing: the GIF of the glimpses and the frame slider.
    browser.find_element(By.ID, "num").clear()
    browser.find_element(By.ID, "num").send_keys("9")
    browser.find_element(By.ID, "draw").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script(
        "const g = document.getElementById('draw-gif'); return g.complete && g.naturalWidth > 0"))
    gif_src = browser.find_element(By.ID, "draw-gif").get_attribute("src")
    assert gif_src.startswith("data:image/gif;base64,R0lGOD")  # "GIF8" in base64
    width = browser.execute_script("return document.getElementById('draw-gif').naturalWidth")
    assert width == 2 + 3 * (12 * 3 + 2)  # 9 images in a 3 x 3 grid of 12-pixel tiles at 3x (render.grid)
    slider = browser.find_element(By.ID, "glimpse")
    assert slider.get_attribute("max") == str(files["steps"])
    assert text_of(browser, "glimpse-label") == f"glimpse {files['steps']} of {files['steps']}"
    browser.execute_script("const s = document.getElementById('glimpse'); s.value = 1;"
                           "s.dispatchEvent(new Event('input'))")
    assert text_of(browser, "glimpse-label") == f"glimpse 1 of {files['steps']}"
    assert "9 images, 4 glimpses, seed 0" in text_of(browser, "draw-status")
    assert text_of(browser, "draw-error") == ""

    shot = tmp_path / "serve_page.png"  # for a person to look at: pytest keeps the last runs' tmp_path
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
