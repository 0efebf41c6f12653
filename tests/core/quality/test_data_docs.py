"""The Data Docs a Validator builds, opened in headless Chromium (Debian's `chromium`, installed by
setup/local/chromium.sh): the index names the suite and links its validation, whose page shows the
suite, a failed status and the failing expectation's unexpected count.

The pages take jQuery, Bootstrap and bootstrap-table from CDNs. Chromium gets no name resolution
(`--host-resolver-rules`), so those loads fail at once instead of waiting on the network, and a virtual
time budget ends the page's timers: what is checked is what GX renders itself. The index's tables are
drawn by bootstrap-table from rows in the page's own scripts, so the index is checked through those rows.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.quality.expectations import expectations
from pipezone.core.quality.validation import Outcome, Validator
from pipezone.core.spec.quality import NotNullCheck, RowCountCheck, UniqueCheck

pytestmark = pytest.mark.spark

SUITE = "silver.docs_probe"
RUN = "docs_probe_run"
INSTALL = "bash setup/local/chromium.sh install"
TIMEOUT = 60  # seconds for one page; a page normally renders in ~1 s


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium binary: a failure in CI (PIPEZONE_CI=1, .ci/run installs it), a skip elsewhere."""
    from services import in_ci

    found = shutil.which("chromium")
    if found:
        return found
    if in_ci():
        pytest.fail(
            f"chromium is not installed; CI needs it (PIPEZONE_CI=1): `make services-up` runs `{INSTALL}`",
            pytrace=False,
        )
    pytest.skip(f"chromium is not installed (install it with `{INSTALL}`, as root)")


@dataclass(frozen=True)
class Site:
    docs: Path
    index: Path
    outcomes: list[Outcome]


@pytest.fixture(scope="module")
def site(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """20 orders, 2 without a status; not_null(status) fails, unique(order_id) and row_count pass."""
    rows = [(i, None if i % 7 == 0 else "paid") for i in range(1, 21)]
    df = spark.createDataFrame(rows, "order_id INT, status STRING")
    checks = [
        (0, NotNullCheck.model_validate({"check": "not_null", "columns": ["status"]})),
        (1, UniqueCheck.model_validate({"check": "unique", "columns": ["order_id"]})),
        (2, RowCountCheck.model_validate({"check": "row_count", "min": 1})),
    ]
    docs = tmp_path_factory.mktemp("data_docs") / "docs"
    validator = Validator(docs)
    outcomes = validator.validate(df, SUITE, expectations(checks, df), ["order_id"], RUN)
    index = validator.build_docs()
    assert index == docs / "index.html" and index.is_file()
    return Site(docs, index, outcomes)


def render(chromium: str, page: Path, profile: Path) -> str:
    """The DOM of `page` after Chromium has loaded it and run its scripts."""
    command = [
        chromium,
        "--headless=new",
        "--no-sandbox",  # root
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # CDNs are unreachable: fail their loads at once
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not render {page} within {TIMEOUT} s", pytrace=False)
    stderr = "\n".join(proc.stderr.splitlines()[-15:])
    assert proc.returncode == 0, f"chromium exited {proc.returncode} on {page}:\n{stderr}"
    assert "</html>" in proc.stdout, f"chromium printed no DOM for {page}:\n{stderr}"
    return proc.stdout


class PageText(HTMLParser):
    """The page's visible text as one line, ` | ` between text nodes; status icons as [passed] / [failed]."""

    ICONS = {"text-success": "[passed]", "text-danger": "[failed]"}

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        classes = (dict(attrs).get("class") or "").split()
        if tag == "i" and "fas" in classes:
            self.parts.extend(icon for name, icon in self.ICONS.items() if name in classes)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text and not self.hidden:
            self.parts.append(text)

    @classmethod
    def of(cls, dom: str) -> str:
        parser = cls()
        parser.feed(dom)
        return " | ".join(parser.parts)


def table_rows(dom: str) -> list[dict[str, Any]]:
    """The rows the index's scripts hand to bootstrap-table (`data: [{...}, ...],`, Python literals)."""
    return [row for found in re.findall(r"^\s*data: (\[.*\]),\s*$", dom, re.M) for row in ast.literal_eval(found)]


def test_the_validation_failed_as_the_pages_should_show(site: Site) -> None:
    by_name = {o.name: o for o in site.outcomes}
    assert {name: o.success for name, o in by_name.items()} == {
        "not_null(status)": False,
        "unique(order_id)": True,
        "row_count": True,
    }
    assert by_name["not_null(status)"].unexpected.count == 2


def test_index_names_the_suite_and_links_its_failed_validation(chromium: str, site: Site, tmp_path: Path) -> None:
    dom = render(chromium, site.index, tmp_path / "profile")
    text = PageText.of(dom)
    assert "Validation Results" in text and "Expectation Suites" in text, text

    rows = table_rows(dom)
    suites = [r for r in rows if r.get("expectation_suite_name") == SUITE]
    assert [r["_table_row_link_path"] for r in suites] == ["expectations/silver/docs_probe.html"]
    (validation,) = [r for r in rows if r.get("_expectation_suite_name_sort") == SUITE]
    assert validation["run_name"] == RUN
    assert validation["_validation_success_text"] == "Failed"
    assert "ge-failed-icon" in validation["validation_success"]
    assert SUITE in validation["expectation_suite_name"]  # the cell's link text

    # The link leads to the one validation page under validations/.
    (page,) = (site.docs / "validations").rglob("*.html")
    assert site.docs / validation["_table_row_link_path"] == page


def test_validation_page_shows_the_suite_the_failure_and_its_count(chromium: str, site: Site, tmp_path: Path) -> None:
    (page,) = (site.docs / "validations").rglob("*.html")
    text = PageText.of(render(chromium, page, tmp_path / "profile"))

    assert f"Validations / {SUITE} / {RUN} /" in text, text
    assert f"Expectation Suite: | {SUITE}" in text, text
    assert "Status: | [failed] | Failed" in text, text
    assert "Evaluated Expectations | 3 | Successful Expectations | 2 | Unsuccessful Expectations | 1" in text, text
    assert f"Run Name | {RUN}" in text, text
    # The failing expectation, its failed icon and its unexpected count; the passing ones with theirs.
    assert "[failed] | status is never null | 2 unexpected values found. 10% of 20 total rows." in text, text
    assert "[passed] | values must be unique." in text, text
    assert "[passed] | Must have greater than or equal to | 1 | rows." in text, text
