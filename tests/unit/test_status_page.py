"""gateway.status_page: the HTML an operator reads, checked as text and in a real browser."""
from __future__ import annotations

import copy
from html.parser import HTMLParser

import pytest

from gateway.ops.status_page import humanise_age, percent, render_status
from tests.support.status_samples import DATA, HOSTILE, PREFIXES, USERS, data_with, hostile_data


class Parsed(HTMLParser):
    """The page as an HTML tokenizer reads it: the elements it opens, and its
    text with character references resolved. What a reader sees, whichever
    spelling the escaper picked (&quot; or &#34;)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: list[str] = []
        self.pres: list[str] = []  # the text of each <pre>
        self._pre: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._pre is not None:
            self._pre.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


# -- unit tests --------------------------------------------------------------------


def test_is_a_complete_html5_page_without_scripts_or_external_assets():
    html = render_status(DATA)
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Migration status</title>" in html
    assert '<meta charset="utf-8">' in html
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html and "src=" not in html


def test_one_row_per_route_with_prefix_and_default_tag():
    html = render_status(DATA)
    assert html.count('<td class="prefix">') == len(PREFIXES)
    for prefix in PREFIXES:
        assert f'<td class="prefix">{prefix}' in html
    assert '<td class="prefix">(default)</td>' in html
    assert '<td class="prefix">/<span class="tag">default</span>' in render_status(data_with(prefix="/"))
    assert '<span class="tag">default</span>' in render_status(data_with(is_default=True))


def test_badges_per_state():
    html = render_status(DATA)
    assert '<span class="badge canary">canary 25%</span>' in html
    assert '<span class="badge shadow">shadow</span>' in html
    assert '<span class="badge python">python</span>' in html
    assert '<span class="badge go">go</span>' in html
    assert '<span class="badge go">go (rolled back)</span>' in html  # colour from the first word
    odd = render_status(data_with(state="paused"))
    assert '<span class="badge unknown">paused</span>' in odd


def test_canary_percent_with_fraction():
    assert "canary 2.5%" in render_status(data_with(canary_percent=2.5))


def test_traffic_share_and_parity():
    html = render_status(DATA)
    assert "75% / 25%" in html
    assert "98.3%" in html and "118/120 shadowed" in html
    assert '<span class="bad">88%</span>' in html  # low parity stands out


def test_parity_dash_when_nothing_shadowed():
    for parity in (None, {"shadowed": 0, "matched": 0, "rate": None}):
        html = render_status(data_with(parity=parity))
        row = html.split('<td class="prefix">/users')[1].split("</tr>")[0]
        assert '<td class="num">—</td>' in row
    html = render_status(data_with(parity={"shadowed": 10, "matched": 5}))  # rate derived
    assert "50%" in html


def test_backend_columns_and_python_worse_than_go():
    html = render_status(DATA)
    llm = html.split('<td class="prefix">/llm')[1].split("</tr>")[0]
    assert '<span class="k">go</span>0.1%' in llm
    assert '<span class="split bad"><span class="k">py</span>9%' in llm  # errors up
    assert '<span class="split bad"><span class="k">py</span>2400 ms' in llm  # p99 ×2.7


def test_shadow_replays_get_their_own_line():
    html = render_status(DATA)
    row = html.split('<td class="prefix">/api-keys')[1].split("</tr>")[0]
    assert '<span class="k">go</span>0.25%' in row
    assert '<span class="split bad"><span class="k">py*</span>180 ms' in row  # p99 ×8.6
    assert '<span class="k">py</span>' not in row  # idle in shadow mode: no empty line
    assert '<span class="split warn">3 dropped</span>' in row and "python errors" not in row
    users = html.split('<td class="prefix">/users')[1].split("</tr>")[0]
    assert '<span class="split"><span class="k">py</span>7.5 ms' in users  # faster: not marked


def test_missing_backend_stats_render_as_dash():
    html = render_status(DATA)
    otel = html.split('<td class="prefix">/otel')[1].split("</tr>")[0]
    assert otel.count("—") >= 4 and "no traffic" in otel
    auth = html.split('<td class="prefix">/auth')[1].split("</tr>")[0]
    assert '<span class="k">go</span>—' in auth


def test_minimal_route_does_not_fail():
    html = render_status({"routes": [{"prefix": "/x", "methods": None, "state": "go"}]})
    assert '<td class="prefix">/x</td>' in html and "never" in html


def test_empty_table_and_config_error_banner():
    html = render_status({"generated_at": "t", "table_version": "v", "config_error": "line 3: unknown key 'too'",
                          "routes": []})
    assert "No routes in the table." in html
    assert 'role="alert"' in html and "still serving the last good table. line 3: unknown key 'too'" in Parsed(html).text
    assert 'role="alert"' not in render_status(DATA)


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "never"), (0, "just now"), (9.9, "just now"), (45, "45 s ago"), (180, "3 min ago"),
     (3599, "59 min ago"), (3600, "1 h ago"), (7300, "2 h ago"), (86400, "1 day ago"), (3 * 86400, "3 days ago"),
     (-5, "just now")],
)
def test_humanised_times(seconds, text):
    assert humanise_age(seconds) == text


def test_humanised_times_in_rows():
    html = render_status(DATA)
    assert "3 min ago" in html and "1 min ago" in html and "2 h ago" in html and "3 days ago" in html and "never" in html


def test_percent_formatting():
    assert percent(0.983) == "98.3%" and percent(0.25) == "25%" and percent(1.0) == "100%"
    assert percent(None) == "—" and percent(0.0004, 2) == "0.04%"


def defused(value):
    """``value`` with every <, > and & in its strings (keys too) made a letter."""
    if isinstance(value, str):
        return value.translate(str.maketrans("<>&", "lga"))
    if isinstance(value, dict):
        return {defused(k): defused(v) for k, v in value.items()}
    if isinstance(value, list):
        return [defused(v) for v in value]
    return value


def test_hostile_strings_show_as_text_and_never_as_markup():
    d = hostile_data()
    html = render_status(d)
    page = Parsed(html)
    # No element came from data: the same elements, in the same order, as the
    # page of the same data with the markup characters taken out.
    assert "<script" not in html.lower() and "<img" not in html
    assert page.tags == Parsed(render_status(defused(d))).tags
    # Each string reads exactly as given.
    text = page.text
    for shown in (f"/u{HOSTILE}<b>", f"GET<i>, {HOSTILE}", f"canary {HOSTILE}", HOSTILE,
                  "a & b <img src=x onerror=document.title=1>", f"python{HOSTILE}", f"body:$.{HOSTILE}",
                  "<v>", "&now", f"line 1: {HOSTILE}"):
        assert shown in text, shown
    assert d["routes"][0]["top_differences"][0]["sample"] in page.pres
    assert "&amp;amp;" in html  # "&amp;" in a diff reads as "&amp;", not as "&"
    assert "<h3>/u&lt;script&gt;" in html  # the section heading too


def test_top_differences_section():
    html = render_status(DATA)
    section = html.split("<h2>Top differences")[1]
    assert "<h3>/users</h3>" in section and "<h3>/api-keys</h3>" in section
    assert "<h3>/auth</h3>" not in section
    assert '<td class="field">body:$[*].CreatedAt</td><td class="num">40</td>' in section
    assert USERS["top_differences"][0]["sample"] in Parsed(section).pres  # line breaks and quotes as given
    no_diffs = copy.deepcopy(DATA)
    for r in no_diffs["routes"]:
        r.pop("top_differences", None)
    assert "Top differences" not in render_status(no_diffs)


def test_notes_and_refresh():
    html = render_status(DATA, refresh_s=15)
    assert "<li>auto-rollback armed: error rate +5%, p99 ×1.5, min 100 requests</li>" in html
    assert '<meta http-equiv="refresh" content="15">' in html
    assert "http-equiv" not in render_status(DATA)


def test_browser_helper_explains_a_missing_chromium(monkeypatch):
    from tests.support import browser

    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(browser.BrowserUnavailable, match="make test.*apt-get install -y chromium"):
        browser.ensure_chromium()
