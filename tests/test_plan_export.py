"""`kamflow plan export`: the account plan as a document, in HTML and in Markdown.

The plan is built through the CLI on SQLite and on PostgreSQL; the HTML page is also rendered in
a real headless Chromium, on screen (a screenshot) and printed (a PDF of several pages).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pypdf
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.records.plan import write_review
from kamflow.reports.plan_document import build_plan_document, md, render_markdown
from tests import account_steps as steps
from tests.browser import browse
from tests.conftest import Cli, Runner, failed, ok, snapshot
from tests.test_reports import EXTERNAL, Page

OWNER = "owner@example.com"
ENGINEER = "engineer@example.com"
#: A name that would run a script if the page pasted it in unescaped; its bar would split a
#: Markdown table's row.
SCRIPTED = '<script>alert("plan")</script> | Ltd'
#: A required question left open.
REQUIRED_OPEN = "our-team.revenue-goal"
REQUIRED_OPEN_TEXT = "What revenue and margin do we aim to reach"
SECTIONS = ("Strategy", "Account team", "Answers", "Actions", "KPIs", "Latest review")


def build_plan(cli: Cli, clock: FixedClock) -> None:
    """SCRIPTED, moved on to Research, with a gap in its team, an answer, a question marked not
    applicable, the required questions still open, an overdue action and a done one, and two
    KPIs with values of two quarters."""
    ok(cli("person", "add", OWNER, "--name", "Key account manager"))
    ok(cli("person", "add", ENGINEER))
    ok(cli("account", "add", SCRIPTED, "--owner", OWNER))
    ok(
        cli(
            "strategy",
            "set",
            SCRIPTED,
            "--objective",
            "Become their *standard* | for plant logistics",
            "--who",
            "COO office",
            "--why",
            "Largest growth potential",
        )
    )
    for role in ("relationship-lead", "collaborator", "project-manager", "result-driver"):
        ok(cli("role", "assign", SCRIPTED, role, OWNER))
    ok(cli("role", "assign", SCRIPTED, "technical-expert", ENGINEER))
    ok(
        cli(
            "plan",
            "answer",
            SCRIPTED,
            "needs.top-business-needs",
            "Lead time | emissions\n# not a heading",
        )
    )
    ok(
        cli(
            "plan",
            "na",
            SCRIPTED,
            "competitors.do-it-themselves",
            "--reason",
            "No team of their own",
        )
    )
    ok(cli("action", "add", SCRIPTED, "Workshop | east", "--owner", ENGINEER, "--due", "+5"))
    ok(cli("action", "add", SCRIPTED, "Pilot proposal", "--owner", OWNER, "--due", "+20"))
    ok(cli("action", "done", SCRIPTED, "2"))
    ok(cli("kpi", "add", SCRIPTED, "Annual revenue", "--target", "1800000", "--unit", "EUR"))
    ok(cli("kpi", "add", SCRIPTED, "Lead time", "--target", "3", "--lower-is-better"))
    for quarter, revenue, lead in (("2026-Q3", "1200000", "5"), ("2026-Q4", "1500000", "4")):
        ok(cli("kpi", "record", SCRIPTED, "Annual revenue", revenue, "--period", quarter))
        ok(cli("kpi", "record", SCRIPTED, "Lead time", lead, "--period", quarter))
    ok(cli("advance", SCRIPTED, "--to", "research"))
    clock.advance(days=10)  # the first action is overdue from here on


def export(cli: Cli, format_: str) -> str:
    return ok(cli("plan", "export", SCRIPTED, "--format", format_))


def test_the_html_document_shows_every_section_of_the_plan(cli: Cli, clock: FixedClock) -> None:
    build_plan(cli, clock)

    html = export(cli, "html")

    page = Page(html)
    text = page.all_text()
    for heading in (*SECTIONS, "Stage history", "Open questions"):
        assert re.search(rf"<h[23][^>]*>\s*{heading}", html), heading
    assert f"Account plan: {SCRIPTED}" in text
    assert "owner@example.com (Key account manager)" in text
    assert "Become their *standard* | for plant logistics" in text
    # The team and its one gap.
    assert "1 role held by nobody: innovator" in text
    # The answers, the not-applicable one with its reason, and the required open question.
    assert "Lead time | emissions" in text and "No team of their own" in text
    opened = html.split('id="open"', 1)[1]
    item = next(li for li in opened.split("<li>")[1:] if REQUIRED_OPEN_TEXT in li)
    assert REQUIRED_OPEN in item and "required" in item
    # The overdue action is marked; the done one is not.
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html.split('id="actions"', 1)[1], re.DOTALL)
    workshop = next(row for row in rows if "Workshop | east" in row)
    pilot = next(row for row in rows if "Pilot proposal" in row)
    assert "overdue" in workshop and "overdue" not in pilot and "done" in pilot
    # KPIs: targets, every recorded value, a trend line per KPI.
    assert "≥ 1,800,000 EUR" in text and "≤ 3" in text
    assert "2026-Q3: 1,200,000" in text and "2026-Q4: 1,500,000" in text
    kpis = html.split('id="kpis"', 1)[1].split("</section>", 1)[0]
    assert kpis.count("<polyline") == 2
    assert "off target" in kpis
    # The stage history.
    assert "Strategy" in text and "Research" in text and "advance" in text


def test_the_html_document_shows_names_as_text_and_needs_nothing_from_outside(
    cli: Cli, clock: FixedClock
) -> None:
    build_plan(cli, clock)

    html = export(cli, "html")

    assert "&lt;script&gt;alert(&#34;plan&#34;)&lt;/script&gt;" in html
    assert "script" not in Page(html).tags
    for marker in EXTERNAL:
        assert marker not in html, marker
    # Print: each section on a page of its own, rows never split.
    print_css = html.split("@media print", 1)[1]
    assert "break-before: page" in print_css and "break-inside: avoid" in print_css


def test_the_markdown_document_escapes_what_markdown_would_read(
    cli: Cli, clock: FixedClock
) -> None:
    build_plan(cli, clock)

    text = export(cli, "md")

    assert text.startswith('# Account plan: \\<script\\>alert("plan")\\</script\\> \\| Ltd\n')
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == [*SECTIONS, "Stage history"]
    assert "Become their \\*standard\\* \\| for plant logistics" in text
    # A line of an answer that starts like a heading stays text.
    assert "\\# not a heading" in text and "\n# not a heading" not in text
    # Every row of the actions table has its six cells: the bar in a title is escaped.
    actions = text.split("## Actions", 1)[1].split("##", 1)[0]
    rows = [line for line in actions.splitlines() if line.startswith("|")]
    assert len(rows) == 4  # the header, its rule, two actions
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 7, row
    workshop = next(row for row in rows if "Workshop" in row)
    assert "Workshop \\| east" in workshop and "**OVERDUE**" in workshop
    assert "OVERDUE" not in next(row for row in rows if "Pilot proposal" in row)
    # The open questions, the required one marked.
    line = next(row for row in text.splitlines() if REQUIRED_OPEN_TEXT in row)
    assert line.startswith("- ") and f"`{REQUIRED_OPEN}`" in line and "**(required)**" in line
    assert "Held by nobody: innovator." in text
    assert "2026-Q3: 1,200,000; 2026-Q4: 1,500,000" in text


def test_md_escapes_markdown_and_leaves_plain_text_alone() -> None:
    assert md("plain text, 2.0 million") == "plain text, 2.0 million"
    assert md("a | b") == "a \\| b"
    assert md("*x* _y_ `z` [l](u) <b> & ~") == "\\*x\\* \\_y\\_ \\`z\\` \\[l\\](u) \\<b\\> \\& \\~"
    assert md("# h") == "\\# h"
    assert md("- item") == "\\- item" and md("+ item") == "\\+ item"
    assert md("1. first") == "1\\. first" and md("=== ") == "\\=== "
    assert md("back\\slash") == "back\\\\slash"


def test_the_document_goes_to_a_private_file(cli: Cli, clock: FixedClock, tmp_path: Path) -> None:
    build_plan(cli, clock)
    target = tmp_path / "plan.md"

    said = ok(cli("plan", "export", SCRIPTED, "--format", "md", "--output", str(target)))

    assert said == f"Wrote the plan of {SCRIPTED} to {target}.\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8") == export(cli, "md")


def test_an_unknown_account_is_one_error_line_and_nothing_changes(
    cli: Cli, clock: FixedClock, engine: Engine, tmp_path: Path
) -> None:
    build_plan(cli, clock)
    before = snapshot(engine)

    line = failed(cli("plan", "export", "Globex", "--output", str(tmp_path / "plan.html")))

    assert line.startswith("Error: no account 'Globex'")
    assert not (tmp_path / "plan.html").exists()
    assert snapshot(engine) == before


def test_the_document_of_an_account_takes_the_same_few_queries_whatever_its_plan_holds(
    cli: Cli, clock: FixedClock, engine: Engine
) -> None:
    """One account, a handful of statements: more KPIs, values and actions add none."""

    def statements() -> int:
        count = 0

        def seen(*_: object) -> None:
            nonlocal count
            count += 1

        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            with db.session_scope(engine) as session:
                data = build_plan_document(session, SCRIPTED, now=clock.now())
                render_markdown(data)
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
        return count

    build_plan(cli, clock)
    small = statements()
    for i in range(4):
        ok(cli("kpi", "add", SCRIPTED, f"KPI {i}", "--target", "10"))
        for quarter in ("2026-Q1", "2026-Q2", "2026-Q3"):
            ok(cli("kpi", "record", SCRIPTED, f"KPI {i}", str(i), "--period", quarter))
        ok(cli("action", "add", SCRIPTED, f"Action {i}", "--owner", OWNER, "--due", "+3"))

    assert statements() == small
    print(f"{small} statements for the plan document")
    assert small <= 15, small


# --- in a real browser ---------------------------------------------------------------------------


def test_the_plan_renders_on_screen_and_prints_on_several_pages_in_headless_chromium(
    chromium: str, cli: Cli, clock: FixedClock, tmp_path: Path
) -> None:
    build_plan(cli, clock)
    target = tmp_path / "plan.html"
    ok(cli("plan", "export", SCRIPTED, "--output", str(target)))
    url = target.resolve().as_uri()

    dumped = browse(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    shot = tmp_path / "plan.png"
    browse(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1000,1400",
        "--hide-scrollbars",
        url,
    )
    printed = tmp_path / "plan.pdf"
    browse(
        chromium,
        tmp_path / "profile-pdf",
        f"--print-to-pdf={printed}",
        "--no-pdf-header-footer",
        url,
    )

    page = Page(dumped.stdout.decode("utf-8"))
    assert "script" not in page.tags and page.tags.count("svg") == 2
    assert SCRIPTED in page.all_text()
    picture = shot.read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 10_000, len(picture)
    pdf = pypdf.PdfReader(printed)
    # The account and strategy, the team, the answers, actions, KPIs, review, history: a page
    # break before each section.
    assert len(pdf.pages) >= 7, len(pdf.pages)
    words = " ".join(p.extract_text() for p in pdf.pages)
    for heading in (*SECTIONS, "Stage history"):
        assert heading in words, heading
    kpi_page = next(p.extract_text() for p in pdf.pages if "KPIs" in p.extract_text())
    assert "Annual revenue" in kpi_page and "Lead time" in kpi_page


def test_the_document_shows_the_latest_review_and_every_stage_change(
    cli: Cli, run: Runner, engine: Engine, clock: FixedClock
) -> None:
    steps.new_account(engine, clock, run)
    steps.reach(run, clock, "review")
    run(write_review, steps.ACCOUNT, conclusion="An earlier draft")
    clock.advance(hours=1)
    run(write_review, steps.ACCOUNT, conclusion="On track | widen the pilot to *two* plants")

    html = ok(cli("plan", "export", steps.ACCOUNT))
    text = ok(cli("plan", "export", steps.ACCOUNT, "--format", "md"))

    review = html.split('id="review"', 1)[1].split("</section>", 1)[0]
    assert "On track | widen the pilot to *two* plants" in review
    assert "An earlier draft" not in review
    assert "> On track \\| widen the pilot to \\*two\\* plants\n" in text
    history = text.split("## Stage history", 1)[1]
    moves = [row.split(" | ")[1:4] for row in history.splitlines() if row.startswith("| 2027")]
    assert moves == [
        ["created", " ", "Strategy"],
        ["advance", "Strategy", "Research"],
        ["advance", "Research", "Action plan"],
        ["advance", "Action plan", "Execution"],
        ["advance", "Execution", "Review"],
    ]
