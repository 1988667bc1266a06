"""`tfstream inspect --html`: one self-contained page with the report's tables and plots,
checked as markup here and rendered in a real headless browser (chromium, driven by
Selenium) where one is installed."""

import base64
import html
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from tfstream.cli import main
from tfstream.pipelines.inspect.html_report import format_html, write_html
from tfstream.pipelines.inspect.plots import figures
from tfstream.pipelines.manifest import load_manifest

HOSTILE = "<script>document.title='pwned'</script>"
HOSTILE_IMG = "<img src=x onerror=\"document.title='pwned'\">"
MATHTEXT = "$\\bad{x$"  # matplotlib would parse it as math, and fail
CITIES = ["oslo", "lima", HOSTILE, HOSTILE_IMG, MATHTEXT]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Every test here writes a small dataset first (two runs of write_arrays, a few seconds).
pytestmark = pytest.mark.slow


def _write(out: str, rng, shift: float) -> None:
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.write.arrays import write_arrays

    config = config_from_dict({
        "name": "small", "source": {"format": "npz", "path": "arrays.npz", "lengths_key": "lengths"},
        "features": [{"name": "steps", "type": "sequence", "column": "seq", "dim": 2},
                     {"name": "x", "type": "float"}, {"name": "city", "type": "string"}],
        "label": {"column": "y", "task": "binary", "num_classes": 2},
        "split": {"fractions": {"train": 0.8, "eval": 0.2}},
        "output": {"num_shards": {"train": 2, "eval": 1}},
    })
    n = 80
    lengths = rng.integers(3, 9, n)
    write_arrays(config, {"seq": rng.random((int(lengths.sum()), 2)).astype("float32"), "lengths": lengths,
                          "x": rng.random(n) + shift, "city": np.array(CITIES)[rng.integers(0, len(CITIES), n)],
                          "y": rng.integers(0, 2, n)}, out)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> str:
    """A sequence, a number and a category holding markup; written twice, the second time
    with the number shifted, so that the manifest records a drift finding."""
    out = str(tmp_path_factory.mktemp("small") / "dataset")
    rng = np.random.default_rng(0)
    _write(out, rng, 0.0)
    _write(out, rng, 3.0)
    return out


def _expected_table_rows(m) -> list[int]:
    """The report's tables in order, as numbers of body rows, from the manifest itself."""
    train = m.split("train")
    city = train.features["city"]
    return [
        len(m.splits),                                   # splits
        sum(len(s.shards) for s in m.splits.values()),  # shards
        len(m.features) + 2,                             # schema: + steps_length, + the label
        1,                                               # numeric: x
        1,                                               # sequence lengths: steps
        min(5, len(city.vocabulary)),                    # vocabulary head of city
        len(m.drift.findings),                           # drift
    ]


class _Page(HTMLParser):
    """Tables (rows of cell texts), images and every tag of a page, by the stdlib parser."""

    def __init__(self):
        super().__init__()
        self.tags, self.tables, self.images, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_page_holds_every_table_and_plot_and_escapes_data(small_dataset):
    m = load_manifest(small_dataset)
    assert [f.feature for f in m.drift.findings] == ["x"]
    page = format_html(m)
    parsed = _Page()
    parsed.feed(page)
    # one header row and the body rows of each table, in the report's order
    assert [len(t) - 1 for t in parsed.tables] == _expected_table_rows(m)
    assert parsed.tables[0][0] == ["split", "shards", "records", "bytes", "record bytes"]
    vocabulary = {row[0]: row[1] for row in parsed.tables[5][1:]}
    assert vocabulary == {t: f"{n:,}" for t, n in m.split("train").features["city"].vocabulary}
    assert {HOSTILE, HOSTILE_IMG, MATHTEXT} <= set(vocabulary)  # the text, unescaped by the parser
    # the markup in the data made no element: the only images are the plots, no script at all
    assert "script" not in parsed.tags and html.escape(HOSTILE) in page
    drawn = figures(m)
    assert [name for name, _ in drawn] == ["train-steps-length-histogram.png", "train-x-histogram.png",
                                           "train-city-vocabulary.png"]
    assert [img["alt"] for img in parsed.images] == [name for name, _ in drawn]
    for img, (_, png) in zip(parsed.images, drawn):
        data = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    # self-contained: nothing fetched from anywhere
    assert "http:" not in page and "https:" not in page and "src=\"data:image/png;base64," in page


def test_cli_writes_the_report(small_dataset, tmp_path, capsys):
    path = str(tmp_path / "report.html")
    assert main(["inspect", small_dataset, "--split", "eval", "--html", path]) == 0
    out = capsys.readouterr().out
    assert "numeric features ('eval' split)" in out and out.rstrip().endswith(f"report: {path}")
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert "<h2>numeric features (&#x27;eval&#x27; split)</h2>" in page
    assert "plots (&#x27;eval&#x27; split; 2 drawn from the manifest)" in page  # no vocabulary on eval


def _browser():
    """Headless chromium under Selenium, or a skip that says what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: "
                                    "pip install -e '.[test]'")
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(f"no headless browser: chromium {chromium or 'not found'}, chromedriver {driver or 'not found'} "
                    f"on PATH; install them with `apt-get install -y chromium chromium-driver` (`make test` does, "
                    f"as root where apt-get exists)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The system's chromedriver, named: Selenium Manager never downloads a browser or a driver.
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_report_renders_in_a_headless_browser(small_dataset, tmp_path):
    m = load_manifest(small_dataset)
    path = write_html(m, str(tmp_path / "report.html"))
    browser = _browser()
    try:
        from selenium.webdriver.common.by import By

        browser.get(f"file://{path}")
        assert browser.title == "tfstream inspect: small"  # the hostile value did not run
        tables = browser.find_elements(By.TAG_NAME, "table")
        assert all(t.is_displayed() for t in tables)
        assert [len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) for t in tables] == _expected_table_rows(m)
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        assert [name for name, *_ in images] == [name for name, _ in figures(m)]
        assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
        # the category values holding markup show as text, in cells, and made no element
        cells = [td.text for td in tables[5].find_elements(By.CSS_SELECTOR, "tbody td:first-child")]
        assert HOSTILE in cells and HOSTILE_IMG in cells
        assert browser.find_elements(By.TAG_NAME, "script") == []
        assert browser.execute_script("return document.querySelectorAll('td img, td script').length") == 0
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()
