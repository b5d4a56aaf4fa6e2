"""The web page at / in a real headless Chromium (Debian's chromium + chromium-driver,
driven by selenium) against `mtctl serve` on SQLite with the real en-pt model: the key
typed into the page, a pasted-text round trip, and file round trips through the page's
file input down to the downloaded, translated file. A screenshot is kept as a test
artefact (the test's tmp dir and tests/artifacts/webui.png).

Skips, naming what is missing, where the browser cannot be had
(`python -m devstack.browser ensure` installs it)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from devstack import browser
from devstack.processes import serve_env
from tests.functional.api_service import JWT_SECRET, running_service

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "tests" / "artifacts"
HAS_PO = (REPO / "control_plane" / "text" / "formats" / "po.py").exists()


def _has_format(name: str) -> bool:
    try:
        from control_plane.text import formats
    except ImportError:
        return False
    return name in formats.names()


HAS_DOCX = _has_format("docx")  # a binary file: no preview, downloaded as it comes
JOB_TIMEOUT_S = 180

TEXT = "Hello, world! This is a test of the translation page. The weather is nice today."
TXT_FILE = (
    "The house is small.\n\n"
    "My brother reads a book every week. The library opens at nine in the morning.\n"
)
PO_ENTRIES = [
    ("Open file", None),
    ("Save the document before closing the window.", None),
    ("%d file was deleted.", "%d files were deleted."),
    ("The printer is out of paper.", None),
]


@pytest.fixture(scope="module")
def missing_browser() -> list[str]:
    return browser.missing()


@pytest.fixture(scope="module")
def service(request, missing_browser, tmp_path_factory):
    if missing_browser:  # before the models and the service: nothing to drive them with
        pytest.skip(
            "no headless Chromium for the web UI test; missing: "
            + "; ".join(missing_browser)
            + " (run `python -m devstack.browser ensure`)"
        )
    model_dir = request.getfixturevalue("model_dir")
    tmp = tmp_path_factory.mktemp("webui")
    env = serve_env(
        os.environ,
        tmp,
        model_dir,
        MTB_DATABASE_URL=f"sqlite:///{tmp / 'service.db'}",
        MTB_JWT_SECRET=JWT_SECRET,
        MTB_RATE_LIMIT_PRO="100000",
    )
    with running_service("sqlite", env, tmp / "serve.log", [("user", "pro")]) as svc:
        yield svc


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("webui-downloads")


@pytest.fixture(scope="module")
def driver(service, downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(browser.CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1500", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(
        service=DriverService(executable_path=str(browser.CHROMEDRIVER)), options=options
    )
    try:
        drv.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        drv.set_page_load_timeout(60)
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def page(driver, service):
    """The page freshly loaded with the user's key typed in and the languages listed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get_log("browser")  # what earlier tests left there
    driver.get(f"{service.url}/")
    key = driver.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(service.keys["user"])

    def languages_listed(d):  # noqa: ANN001, ANN202
        src = [o.get_attribute("value") for o in Select(d.find_element(By.ID, "source")).options]
        tgt = [o.get_attribute("value") for o in Select(d.find_element(By.ID, "target")).options]
        return "en" in src and "auto" in src and "pt" in tgt

    WebDriverWait(driver, 60).until(languages_listed)
    Select(driver.find_element(By.ID, "source")).select_by_value("en")
    Select(driver.find_element(By.ID, "target")).select_by_value("pt")
    Select(driver.find_element(By.ID, "priority")).select_by_value("high")
    return driver


def _wait_for_result(driver) -> str:  # noqa: ANN001
    """Wait until the page shows a result or an error; the translation shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):  # noqa: ANN001, ANN202
        error = d.find_element(By.ID, "error")
        if error.is_displayed() and error.text:
            return "error"
        return d.find_element(By.ID, "result-section").is_displayed() and "result"

    outcome = WebDriverWait(driver, JOB_TIMEOUT_S, poll_frequency=0.25).until(done)
    status = driver.find_element(By.ID, "status").text
    assert outcome == "result", (driver.find_element(By.ID, "error").text, status)
    assert ": completed" in status, status
    assert driver.find_element(By.ID, "progress").get_attribute("value") == "1"
    return driver.find_element(By.ID, "result").get_attribute("value")


def _screenshot(driver, tmp_path: Path, name: str) -> Path:  # noqa: ANN001
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot)), "the screenshot could not be taken"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)
    return shot


def _console_problems(driver) -> list[str]:  # noqa: ANN001
    """Errors in the browser console (a CSP violation, a script that failed)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]
    ]


def _download(driver, downloads: Path) -> Path:  # noqa: ANN001
    """Click the page's download link; the file the browser saved."""
    from selenium.webdriver.common.by import By

    link = driver.find_element(By.ID, "download")
    assert link.is_displayed()
    name = link.get_attribute("download")
    assert name, "the download link has no file name"
    target = downloads / name
    if target.exists():
        target.unlink()
    link.click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = list(downloads.glob("*.crdownload"))
        if target.exists() and not partial and target.stat().st_size > 0:
            return target
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder has {os.listdir(downloads)}")


def test_text_round_trip(page, service, tmp_path):
    from selenium.webdriver.common.by import By

    assert page.title.startswith("mt-backend")
    # the key is kept for the tab only
    key = page.execute_script("return sessionStorage.getItem('mtb.apiKey')")
    assert key == service.keys["user"]
    page.find_element(By.ID, "content").send_keys(TEXT)
    page.find_element(By.ID, "submit").click()
    started = time.monotonic()
    shown = _wait_for_result(page)
    elapsed = time.monotonic() - started
    print(f"text round trip: {elapsed:.1f} s in the page; shown: {shown!r}")
    assert shown.strip() and shown != TEXT
    assert "mundo" in shown.lower(), shown  # "Hello, world!" in Portuguese
    _screenshot(page, tmp_path, "webui-text.png")
    assert _console_problems(page) == []


def _po_file(path: Path) -> None:
    import polib

    po = polib.POFile()
    po.metadata = {
        "Project-Id-Version": "webui-test 1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "Language": "en",
    }
    for msgid, plural in PO_ENTRIES:
        if plural:
            po.append(polib.POEntry(msgid=msgid, msgid_plural=plural, msgstr_plural={0: "", 1: ""}))
        else:
            po.append(polib.POEntry(msgid=msgid, msgstr=""))
    po.save(str(path))


def _check_txt(saved: Path) -> None:
    text = saved.read_text(encoding="utf-8")
    assert text.strip() and text != TXT_FILE
    assert text.count("\n\n") == TXT_FILE.count("\n\n"), text  # the paragraphs kept
    assert "casa" in text.lower(), text  # "The house is small."


def _check_po(saved: Path) -> None:
    import polib

    po = polib.pofile(str(saved))
    entries = {e.msgid: e for e in po}
    assert set(entries) == {msgid for msgid, _ in PO_ENTRIES}
    for msgid, plural in PO_ENTRIES:
        entry = entries[msgid]
        if plural:
            forms = [v for _, v in sorted(entry.msgstr_plural.items())]
            assert forms and all(f.strip() and "%d" in f for f in forms), forms
        else:
            assert entry.msgstr.strip() and entry.msgstr != msgid, (msgid, entry.msgstr)
    assert po.metadata.get("Language") == "pt", po.metadata


DOCX_PARAGRAPHS = ["The printer is out of paper.", "Open the settings menu and choose a language."]


def _docx_file(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph(DOCX_PARAGRAPHS[0])
    p = document.add_paragraph("Open the ")
    p.add_run("settings").bold = True
    p.add_run(" menu and choose a language.")
    document.save(str(path))


def _check_docx(saved: Path) -> None:
    import docx

    texts = [p.text for p in docx.Document(str(saved)).paragraphs]
    assert len(texts) == len(DOCX_PARAGRAPHS), texts
    for src, out in zip(DOCX_PARAGRAPHS, texts, strict=True):
        assert out.strip() and out != src, (src, out)
    assert "impressora" in texts[0].lower(), texts


FILES = [pytest.param("notes.txt", id="txt")]
if HAS_PO:
    FILES.append(pytest.param("messages.po", id="po"))
if HAS_DOCX:
    FILES.append(pytest.param("guide.docx", id="docx"))


@pytest.mark.parametrize("name", FILES)
def test_file_round_trip(page, downloads, tmp_path, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    source = tmp_path / name
    stem, ext = name.rsplit(".", 1)
    if ext == "po":
        _po_file(source)
    elif ext == "docx":
        _docx_file(source)
        # and the language detected by the service: source "auto"
        Select(page.find_element(By.ID, "source")).select_by_value("auto")
    else:
        source.write_text(TXT_FILE, encoding="utf-8")
    page.find_element(By.ID, "file").send_keys(str(source))
    assert name in page.find_element(By.ID, "file-name").text
    assert not page.find_element(By.ID, "content").is_enabled()  # the file wins
    page.find_element(By.ID, "submit").click()
    started = time.monotonic()
    shown = _wait_for_result(page)
    saved = _download(page, downloads)
    elapsed = time.monotonic() - started
    assert saved.name == f"{stem}.pt.{ext}", saved.name
    print(f"{name} round trip: {elapsed:.1f} s to the downloaded {saved.name}")
    assert shown.strip()
    {"po": _check_po, "docx": _check_docx}.get(ext, _check_txt)(saved)
    if ext == "docx":
        assert "use the download link" in shown  # no preview of a binary file
        assert "detected: English (en)" in page.find_element(By.ID, "status").text
    shot = _screenshot(page, tmp_path, f"webui-{ext}.png")
    if ext == ("po" if HAS_PO else "txt"):  # the last file round trip: the artefact
        shutil.copyfile(shot, tmp_path / "webui.png")
        shutil.copyfile(shot, ARTIFACTS / "webui.png")
    assert _console_problems(page) == []


def test_an_api_error_shows_its_message(page, service):
    """A refused request shows the API's own error message (here: a wrong key)."""
    import requests
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = "not-a-real-key"
    expected = requests.post(
        f"{service.url}/api/v1/translate",
        json={"source_language": "en", "target_language": "pt", "content": TEXT},
        headers={"Authorization": f"Bearer {bad}"},
        timeout=30,
    )
    assert expected.status_code == 401
    message = expected.json()["error"]["message"]
    key = page.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(bad)
    page.find_element(By.ID, "content").send_keys(TEXT)
    page.find_element(By.ID, "submit").click()
    error = page.find_element(By.ID, "error")
    WebDriverWait(page, 30).until(lambda d: error.is_displayed() and error.text)
    assert error.text == message
    assert page.find_element(By.ID, "submit").is_enabled()  # ready for another try


def _long_text(sentences: int) -> str:
    """Distinct sentences (no two alike, so the segment cache cannot finish it at once)."""
    adj = ["red", "small", "old", "quiet", "bright", "heavy", "cold"]
    noun = ["house", "river", "teacher", "garden", "window", "letter", "train", "village",
            "doctor", "market", "bridge"]  # fmt: skip
    verb = ["sees", "follows", "paints", "opens", "finds", "visits", "carries", "watches",
            "remembers", "describes", "leaves", "builds", "answers"]  # fmt: skip
    obj = ["a blue door", "the last page", "an empty street", "the morning light",
           "a long road", "the wooden table", "a quiet song"]  # fmt: skip
    return "\n".join(
        f"The {adj[i % 7]} {noun[i % 11]} {verb[i % 13]} {obj[(i // 7) % 7]} "
        f"near the {noun[(i // 11) % 11]}."
        for i in range(sentences)
    )


def test_cancel(page, service):
    """A long job cancelled from the page stops as cancelled, and the API says so."""
    import requests
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    Select(page.find_element(By.ID, "priority")).select_by_value("normal")
    content = page.find_element(By.ID, "content")
    page.execute_script("arguments[0].value = arguments[1];", content, _long_text(1500))
    page.find_element(By.ID, "submit").click()
    cancel = page.find_element(By.ID, "cancel")
    WebDriverWait(page, 60).until(lambda d: cancel.is_enabled())
    status = page.find_element(By.ID, "status")
    WebDriverWait(page, 60).until(lambda d: status.text.startswith("Job "))
    job_id = status.text.split(":", 1)[0].removeprefix("Job ").strip()
    cancel.click()
    WebDriverWait(page, 60).until(lambda d: ": cancelled" in status.text)
    assert not page.find_element(By.ID, "result-section").is_displayed()
    r = requests.get(
        f"{service.url}/api/v1/jobs/{job_id}", headers=service.headers("user"), timeout=30
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert _console_problems(page) == []
