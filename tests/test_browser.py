"""The pages in a real browser: Debian's chromium, driven by Playwright, against the app on
a real port, with real cases on the dev server."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from domain.models import AlertAck
from service.users import Role
from tests.harness import Harness, eventually, running_worker
from tests.web_support import PASSWORD, add_user, app_for, case_waiting_for_visit, serving
from workflows.collection import LoanCollectionWorkflow as WF

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# This machine's network is closed: no background connections, no first-run work.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}  # a collector's phone


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make setup`")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        await b.close()


@pytest.fixture
async def site(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[tuple[Harness, str]]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        async with serving(app_for(h)) as base:
            yield h, base


async def sign_in(page: Page, base: str, username: str, path: str = "/") -> None:
    await page.goto(base + path)
    await expect(page.locator("h1")).to_contain_text("Sign in")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")


async def test_supervisor_filters_to_a_stage_and_opens_a_case(site, browser: Browser) -> None:
    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"], display_name="李主任")
    page = await browser.new_page()
    await sign_in(page, base, "sup")
    await expect(page).to_have_url(base + "/dashboard")
    await expect(page.locator("#stage-counts")).to_contain_text("FIELD_VISIT")

    await page.select_option("#stage", "FIELD_VISIT")
    await page.click("#filters button[type=submit]")
    await expect(page).to_have_url(
        base + "/dashboard?stage=FIELD_VISIT&branch=&collector=&risk=&min_dpd="
    )
    row = page.locator("#cases tr", has_text=case.loan_no)
    for _ in range(50):  # visibility is eventually consistent: reload until it is listed
        if await row.count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await expect(row).to_contain_text("FIELD_VISIT")
    stages = await page.locator("#cases td.stage").all_inner_texts()
    assert stages and set(stages) == {"上门外访 FIELD_VISIT"}  # Chinese first

    await row.locator("a").click()
    await expect(page.locator("#stage")).to_have_text("上门外访 FIELD_VISIT")
    await expect(page.locator("#state")).to_contain_text(case.collector)
    await expect(page.locator("#timeline")).to_contain_text("INITIAL_CONTACT → FIELD_VISIT")
    await page.screenshot(path=str(h.data_dir / "supervisor-case.png"), full_page=True)
    await page.close()
    await case.handle.cancel()


async def test_collector_reports_a_visit_on_a_phone_and_the_case_moves_on(
    site, browser: Browser
) -> None:
    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    # Straight to the case: sent to sign in first, then back to the case.
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page).to_have_url(base + f"/cases/{case.loan_no}")
    await expect(page.locator("#stage")).to_have_text("上门外访 FIELD_VISIT")
    # Fits the phone's width: nothing to scroll sideways.
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0

    await page.select_option("#outcome", "MET")
    await page.fill("#notes", "在家，同意商量还款")
    # Alone, the report is refused (every visit by two, cba-2026): the collector ticks the
    # teammate who came along; nothing is ticked for them.
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("collector_ids")
    await page.select_option("#outcome", "MET")
    await page.fill("#notes", "在家，同意商量还款")
    await page.check("#visit-form input[name=teammates]")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("visit 1 recorded: MET")
    await h.at_stage(case.handle, "NEGOTIATION")
    await page.reload()
    await expect(page.locator("#stage")).to_have_text("还款协商 NEGOTIATION")
    await expect(page.locator("#visits")).to_contain_text("在家，同意商量还款")
    await expect(page.locator("#plan-form")).to_be_visible()

    await page.goto(base + "/my")
    card = page.locator(".my-case", has_text=case.loan_no)
    for _ in range(50):  # the next step comes from visibility, eventually consistent
        if "agree a plan" in await card.inner_text():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await expect(card).to_contain_text("NEGOTIATION")
    await expect(card).to_contain_text("agree a plan")
    await page.screenshot(path=str(h.data_dir / "collector-my-cases.png"), full_page=True)
    await context.close()
    await case.handle.cancel()


async def test_a_collector_cannot_open_another_collectors_case(site, browser: Browser) -> None:
    h, base = site
    case = await case_waiting_for_visit(h)
    team = (await h.status(case.handle)).collectors  # the rule set's team of two
    other = next(c for c in ("QX01-C01", "QX01-C02", "QX01-C03") if c not in team)
    add_user(h, "wang", Role.COLLECTOR, collector_id=other)
    page = await browser.new_page()
    await sign_in(page, base, "wang")
    await expect(page).to_have_url(base + "/my")
    await expect(page.locator("main")).not_to_contain_text(case.loan_no)
    response = await page.goto(base + f"/cases/{case.loan_no}")
    assert response is not None and response.status == 404
    await expect(page.locator("h1")).to_contain_text("no case")
    await expect(page.locator("body")).not_to_contain_text("王建国")  # the borrower's name
    await page.close()
    await case.handle.cancel()


async def test_the_reports_page_draws_its_charts_without_a_network(site, browser: Browser) -> None:
    from domain.models import CloseRequest, VisitReport
    from workflows.collection import LoanCollectionWorkflow as WF

    h, base = site
    case = await case_waiting_for_visit(h)
    await case.handle.execute_update(
        WF.report_visit,
        VisitReport("NOT_HOME", case.team, datetime.now(UTC)),
    )
    await h.pay(case.handle, 100_000)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    page = await browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await sign_in(page, base, "sup", "/reports")
    await expect(page.locator("h1")).to_contain_text("成效报表")
    for chart in ("#chart-flow", "#chart-recovery", "#chart-workload"):
        await expect(page.locator(f"{chart} svg")).to_be_visible()
    assert await page.locator("#chart-flow svg rect.bar").count() >= 1  # the case's bucket
    await expect(page.locator("#chart-workload svg")).to_contain_text(case.team[0])
    await expect(page.locator("#outcomes")).to_contain_text("QX01")
    await expect(page.locator("#outcomes")).to_contain_text("10.0%")  # 1,000 of 10,000 yuan
    assert all(u.startswith(base) for u in requests), requests  # nothing from elsewhere
    await page.screenshot(path=str(h.data_dir / "supervisor-reports.png"), full_page=True)
    await page.close()
    await case.handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))


async def test_collector_checks_in_asks_for_help_and_checks_out_on_a_phone(
    site, browser: Browser
) -> None:
    """Issue 15: the phone page's check-in, "need help" and check-out (with the help given),
    in headless Chromium on a phone-sized screen; the supervisor acknowledges the alert."""
    from sqlalchemy import select

    from db.models import Task, Visit

    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"], mobile="13800000001")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#checkin-form")).to_be_visible()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0

    await page.check("#checkin-form input[name=teammates]")
    await page.click("#checkin-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("签到成功")
    await expect(page.locator("#visit-in-progress")).to_contain_text(case.collector)

    await page.fill("#help-form input[name=notes]", "狗拴不住，院门外等候")
    await page.click("#help-button")
    await expect(page.locator("#flash")).to_contain_text("已通知主管")
    with h.sessions() as session:
        for _ in range(100):
            alert = session.scalar(select(Task).where(Task.kind == "SAFETY_ALERT"))
            if alert is not None:
                break
            await asyncio.sleep(0.1)
    assert alert is not None and "狗拴不住" in alert.detail

    await page.select_option("#checkout_outcome", "MET")
    await page.fill("#checkout_notes", "已面谈")
    await page.check("#checkout-form input[value=HARDSHIP_REFERRAL]")
    await page.check("#checkout-form input[value=DISASTER]")
    await page.fill("#situation", "冰雹打坏了烤烟")
    await page.click("#checkout-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("visit 1 recorded: MET")
    await expect(page.locator("#visit-in-progress")).to_have_count(0)
    await expect(page.locator("#checkin-form")).to_be_visible()  # the next visit's
    with h.sessions() as session:
        visit = session.scalar(select(Visit))
        assert visit is not None and visit.hardships == "DISASTER"
        assert visit.counselling == "HARDSHIP_REFERRAL" and visit.situation == "冰雹打坏了烤烟"
    await context.close()

    supervisor = await browser.new_page()
    await sign_in(supervisor, base, "sup", f"/cases/{case.loan_no}")
    await expect(supervisor.locator("#alert-1")).to_contain_text("HELP")
    await supervisor.click("#alert-1 button[type=submit]")
    await expect(supervisor.locator("#flash")).to_contain_text("alert 1 acknowledged")
    await expect(supervisor.locator("#alert-1")).to_have_count(0)
    await supervisor.close()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_a_visit_reported_offline_is_queued_and_applied_once_when_signal_returns(
    site, browser: Browser
) -> None:
    """Issue 15 item 7: with the network off the visit report stays on the phone (shown as
    unsent), goes out when the network is back, and is applied once even if sent again."""
    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#unsent")).to_contain_text("0")
    worker_js = await page.request.get(base + "/sw.js")
    assert worker_js.ok and "caches" in await worker_js.text()

    await context.set_offline(True)
    await page.select_option("#outcome", "MET")
    await page.fill("#notes", "村里没信号，回来再发")
    await page.check("#visit-form input[name=teammates]")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#unsent")).to_contain_text("1")
    await expect(page.locator("#unsent-list")).to_contain_text("Report a visit")
    await asyncio.sleep(1)
    assert (await h.status(case.handle)).counters.visits == 0  # nothing reached the case

    await context.set_offline(False)  # signal returns: the queue is sent
    await expect(page.locator("#unsent")).to_contain_text("0", timeout=15000)
    await expect(page.locator("#sent-list")).to_contain_text("visit 1 recorded: MET")
    await h.at_stage(case.handle, "NEGOTIATION")
    # The same id sent again (a lost answer, a second flush): applied once.
    mate = next(c for c in case.team if c != case.collector)
    answers = await page.evaluate(
        """async ([loan, mate]) => {
            const send = () => fetch('/cases/' + loan + '/visit', {method: 'POST',
              headers: {accept: 'application/json'},
              body: new URLSearchParams({csrf: document.querySelector('[name=csrf]').value,
                outcome: 'MET', teammates: mate, op_id: 'repeat-op-0001'})}).then(r => r.json());
            const first = await send();
            return [first, await send()];
        }""",
        [case.loan_no, mate],
    )
    assert answers[0]["accepted"] and answers[0] == answers[1]
    assert answers[0]["message"] == "visit 2 recorded: MET"
    assert (await h.status(case.handle)).counters.visits == 2  # not 3
    await context.close()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_kept_pages_are_the_sessions_own_and_go_with_sign_out(site, browser: Browser) -> None:
    """Issue 15 review, item 3: the case page is kept for the signed-in collector (it opens
    without signal), its record CSV is never kept, and after signing out nothing is served
    offline to whoever picks up the phone."""
    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    url = f"{base}/cases/{case.loan_no}"
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#unsent")).to_contain_text("0")
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    await page.reload()  # now through the service worker: kept
    await page.request.get(f"{url}/record.csv")
    await page.evaluate(f"fetch('{url}/record.csv').then(r => r.status)")
    kept = await page.evaluate(
        """async () => {
            const out = [];
            for (const name of await caches.keys()) {
              if (!name.startsWith('collection-pages-')) continue;
              for (const r of await (await caches.open(name)).keys()) out.push(name + ' ' + r.url);
            }
            return out;
        }"""
    )
    assert len(kept) == 1 and kept[0].endswith(f"/cases/{case.loan_no}"), kept
    assert "collection-pages-v1" not in kept[0]

    await context.set_offline(True)
    await page.reload()
    await expect(page.locator("#unsent")).to_be_visible()  # the kept page, without signal
    await context.set_offline(False)

    await page.goto(url)
    await page.click("form[action='/logout'] button")
    await expect(page.locator("h1")).to_contain_text("Sign in")
    await context.set_offline(True)
    with pytest.raises(Exception):  # noqa: B017 - the browser's own network error page
        await page.goto(url)
    await context.set_offline(False)
    await page.goto(base + "/login")
    names = await page.evaluate("caches.keys()")
    assert [n for n in names if n.startswith("collection-pages-")] == [], names
    await context.close()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_a_queued_action_is_sent_with_the_pages_fresh_token_and_kept_per_user(
    site, browser: Browser
) -> None:
    """Issue 15 review, item 8 (c): the queue is the signed-in user's; at flush the page's
    current CSRF token replaces the queued one (a stale one after signing in again)."""
    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#unsent")).to_contain_text("0")
    await context.set_offline(True)
    await page.select_option("#outcome", "MET")
    await page.check("#visit-form input[name=teammates]")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#unsent")).to_contain_text("1")
    keys = await page.evaluate("Object.keys(localStorage)")
    assert keys == ["collection-queue:zhang"], keys
    # As if queued under an earlier session: its token is no longer valid.
    await page.evaluate(
        """() => {
            const q = JSON.parse(localStorage.getItem('collection-queue:zhang'));
            const stale = (f) => { if (f[0] === 'csrf') f[1] = 'stale'; };
            q.forEach((item) => item.fields.forEach(stale));
            localStorage.setItem('collection-queue:zhang', JSON.stringify(q));
        }"""
    )
    await context.set_offline(False)
    await expect(page.locator("#unsent")).to_contain_text("0", timeout=15000)
    await expect(page.locator("#sent-list")).to_contain_text("visit 1 recorded: MET")
    await h.at_stage(case.handle, "NEGOTIATION")
    await context.close()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def timers_fire(page: Page, ms: int) -> None:
    """The page's timers (its retry, its timeout) fire `ms` early while its clock stays right,
    as on a phone: the page sends its clock with each action (`sent_at`) and the server puts
    the recorded time on its own clock by it, so the page's clock must not jump ahead."""
    await page.clock.set_system_time(datetime.now(UTC) - timedelta(milliseconds=ms))
    await page.clock.fast_forward(ms)


async def _visits_applied(h: Harness, case) -> int:  # type: ignore[no-untyped-def]
    return (await h.status(case.handle)).counters.visits


async def test_an_action_is_kept_when_the_phone_says_online_but_nothing_gets_through(
    site, browser: Browser
) -> None:
    """Issue 15 review, weak signal item 1: the phone says "online" while requests fail
    (aborted), meet a gateway error (503) or hang: the visit report is kept on the phone
    (never lost, never sent twice), a refusal on the merits is shown and not kept, and the
    page sends the queue again by itself (every 15 s) once requests get through."""
    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    # Service workers blocked: routes see every request (the page's queue is under test).
    context = await browser.new_context(viewport=PHONE, is_mobile=True, service_workers="block")
    page = await context.new_page()
    await page.clock.install()  # the page's timers: its 15 s timeout and retry, on demand
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#unsent")).to_contain_text("0")
    assert await page.evaluate("navigator.onLine")

    # A rule's refusal (no teammate) is the case's answer: shown, not kept.
    await page.select_option("#outcome", "MET")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("collector_ids")
    await expect(page.locator("#unsent")).to_contain_text("0")

    async def aborted(route) -> None:  # type: ignore[no-untyped-def]
        await route.abort("connectionfailed")

    visit_url = f"**/cases/{case.loan_no}/visit"
    await page.route(visit_url, aborted)
    await page.select_option("#outcome", "MET")
    await page.fill("#notes", "信号一格，发不出去")
    await page.check("#visit-form input[name=teammates]")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#unsent")).to_contain_text("1")
    await expect(page.locator("#unsent-list")).to_contain_text("Report a visit")
    await expect(page.locator("#flash")).to_contain_text("not sent")
    await page.unroute(visit_url, aborted)

    tries: list[str] = []

    async def bad_gateway(route) -> None:  # type: ignore[no-untyped-def]
        tries.append("503")
        await route.fulfill(status=503, content_type="text/html", body="<h1>502 Bad Gateway</h1>")

    await page.route(visit_url, bad_gateway)
    await timers_fire(page, 16_000)  # the page tries again by itself
    await eventually(lambda: tries, "the retry meeting the gateway error")
    await expect(page.locator("#unsent")).to_contain_text("1")
    await page.unroute(visit_url, bad_gateway)

    hanging = asyncio.Event()

    async def hang(route) -> None:  # type: ignore[no-untyped-def]
        hanging.set()  # never answered: the page gives up after its timeout

    await page.route(visit_url, hang)
    await timers_fire(page, 16_000)
    await asyncio.wait_for(hanging.wait(), 10)
    await timers_fire(page, 16_000)  # past the 15 s timeout
    await expect(page.locator("#unsent")).to_contain_text("1")
    assert await _visits_applied(h, case) == 0  # nothing reached the case
    await page.unroute(visit_url, hang)

    await timers_fire(page, 16_000)  # requests get through: sent, once
    await expect(page.locator("#unsent")).to_contain_text("0", timeout=15000)
    await expect(page.locator("#sent-list")).to_contain_text("visit 1 recorded: MET")
    await h.at_stage(case.handle, "NEGOTIATION")
    assert await _visits_applied(h, case) == 1
    await context.close()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_a_check_in_that_stays_unsent_says_call_the_branch_and_its_timer_starts_on_arrival(
    site, browser: Browser
) -> None:
    """Issue 15 review, weak signal item 1: a check-in whose requests fail while the phone
    says "online" is kept, the page tells the collector to call the branch (its number, kept
    with the page) and stays so after a reload; sent later, the case has the time the phone
    recorded and starts the alert's timer when it arrives. An unsent call for help says to
    phone the branch at once."""
    from db.models import Branch
    from domain.models import AlertAck, CheckOut, VisitReport
    from workflows.collection import LoanCollectionWorkflow as WF

    h, base = site
    with h.sessions.begin() as session:
        branch = session.get(Branch, "QX01")
        assert branch is not None
        branch.phone = "0851-88886666"
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True, service_workers="block")
    page = await context.new_page()
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#checkin-form")).to_be_visible()
    await expect(page.locator("#unsent-checkin")).to_be_hidden()

    check_in_url = f"**/cases/{case.loan_no}/check-in"
    await page.route(check_in_url, lambda route: route.abort("timedout"))
    await page.check("#checkin-form input[name=teammates]")
    await page.click("#checkin-form button[type=submit]")
    await expect(page.locator("#unsent")).to_contain_text("1")
    hint = page.locator("#unsent-checkin")
    await expect(hint).to_be_visible()
    await expect(hint).to_contain_text("请致电网点")
    await expect(hint.locator("a[href='tel:0851-88886666']")).to_be_visible()
    await expect(page.locator("#checkin-form")).to_be_hidden()
    await page.reload()  # still unsent after the page opens again
    await expect(hint).to_be_visible()
    await expect(page.locator("#checkin-form")).to_be_hidden()
    await expect(page.locator("#checked-in-offline")).to_be_visible()
    assert (await h.status(case.handle)).visit is None
    queued = await page.evaluate("JSON.parse(localStorage.getItem('collection-queue:zhang'))")
    recorded = datetime.fromisoformat(queued[0]["recorded"])  # the phone's time, its offset

    await page.unroute(check_in_url)
    await asyncio.sleep(3)  # out of signal a while longer
    arrival = datetime.now(UTC)
    await page.reload()  # opening the page sends the queue
    await expect(page.locator("#unsent")).to_contain_text("0", timeout=15000)
    await expect(page.locator("#sent-list")).to_contain_text("签到成功")
    visit = (await h.status(case.handle)).visit
    assert visit is not None
    assert abs(visit.checked_in_at - recorded) < timedelta(seconds=1)
    # The timer (2 h expected + 30 min grace) runs from the check-in's arrival, not its time.
    lasts = timedelta(hours=2, minutes=30)
    assert visit.alert_at - (visit.checked_in_at + lasts) >= timedelta(seconds=3)
    assert abs(visit.alert_at - (arrival + lasts)) < timedelta(seconds=10), (visit, arrival)

    # A call for help that cannot be sent: phone the branch now.
    help_url = f"**/cases/{case.loan_no}/help"
    await page.route(help_url, lambda route: route.abort("connectionfailed"))
    await page.click("#help-button")
    await expect(page.locator("#unsent-help")).to_be_visible()
    await expect(page.locator("#unsent-help a[href='tel:0851-88886666']")).to_be_visible()
    await page.unroute(help_url)
    await page.reload()
    await expect(page.locator("#sent-list")).to_contain_text("已通知主管")
    await expect(page.locator("#unsent-help")).to_be_hidden()
    await context.close()
    # A case ends only once its team has checked out and its alerts are acknowledged.
    await case.handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup"))
    await case.handle.execute_update(
        WF.check_out, CheckOut(VisitReport("MET", visit.collector_ids, datetime.now(UTC)))
    )
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def retried_until_stuck(page: Page) -> None:
    """Fire the page's retry until its queued visit is stuck, waiting for each try to be
    taken in (counted by the page): a retry while a flush is still under way does nothing."""

    async def visit() -> dict:  # type: ignore[type-arg]
        queue = await page.evaluate("JSON.parse(localStorage.getItem('collection-queue:zhang'))")
        return next(item for item in queue if item["form"] == "visit-form")

    for _ in range(30):
        counted = await visit()
        if counted.get("stuck"):
            return
        await timers_fire(page, 16_000)
        for _ in range(40):
            now = await visit()
            if now.get("stuck") or now.get("tries", 0) > counted.get("tries", 0):
                break
            await asyncio.sleep(0.05)
    raise AssertionError("the visit never got stuck")


async def test_a_stuck_action_holds_back_only_its_own_case_and_a_call_for_help_goes_first(
    site, browser: Browser
) -> None:
    """Weak signal review, finding 3: one case's visit that meets a server error every time
    does not hold back a call for help (sent first), nor another case's visit; it holds back
    only the later actions of its own case (their order kept). After MAX_TRIES it is stuck:
    no longer sent by itself, shown with "call the branch", kept for the collector to resend
    or discard (discarding asks first); the case's later action then goes."""
    from db.models import Branch

    h, base = site
    with h.sessions.begin() as session:
        branch = session.get(Branch, "QX01")
        assert branch is not None
        branch.phone = "0851-88886666"
    one, other = await case_waiting_for_visit(h), await case_waiting_for_visit(h)
    # Teams of two out of the branch's three collectors: someone is on both.
    collector = sorted(set(one.team) & set(other.team))[0]
    add_user(h, "zhang", Role.COLLECTOR, collector_id=collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True, service_workers="block")
    page = await context.new_page()
    await page.clock.install()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if r.method == "POST" else None)
    await sign_in(page, base, "zhang", f"/cases/{one.loan_no}")
    await expect(page.locator("#unsent")).to_contain_text("0")

    tries: list[int] = []

    async def broken(route) -> None:  # type: ignore[no-untyped-def]
        tries.append(1)
        await route.fulfill(status=500, content_type="text/html", body="<h1>Internal error</h1>")

    await page.route(f"**/cases/{one.loan_no}/visit", broken)
    await page.select_option("#outcome", "MET")
    await page.check("#visit-form input[name=teammates]")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("not sent")
    await expect(page.locator("#unsent")).to_contain_text("1")

    await page.fill("#help-form input[name=notes]", "院门口有人拦着")
    await page.click("#help-button")  # queued after the stuck visit, sent before it
    await expect(page.locator("#flash")).to_contain_text("已通知主管")
    await expect(page.locator("#unsent")).to_contain_text("1")
    await page.select_option("#call_outcome", "NO_ANSWER")
    await page.click("#call-form button[type=submit]")  # after the visit, in the same case
    await expect(page.locator("#flash")).to_contain_text("not sent")
    await expect(page.locator("#unsent")).to_contain_text("2")
    assert (await h.status(one.handle)).counters.visits == 0

    await page.goto(f"{base}/cases/{other.loan_no}")  # another case: not held back
    await page.select_option("#outcome", "MET")
    await page.check("#visit-form input[name=teammates]")
    await page.click("#visit-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("visit 1 recorded: MET")
    await h.at_stage(other.handle, "NEGOTIATION")
    await expect(page.locator("#unsent")).to_contain_text("2")
    assert any("sent_at=" in body and "op_id=" in body for body in sent), sent

    stuck = page.locator("#unsent-list li.stuck")
    await retried_until_stuck(page)  # the page retries by itself, then stops
    await expect(stuck).to_have_count(1)
    await expect(stuck).to_contain_text("Report a visit")
    hint = page.locator("#unsent-stuck")
    await expect(hint).to_be_visible()
    await expect(hint.locator("a[href='tel:0851-88886666']")).to_be_visible()
    stopped = len(tries)
    await timers_fire(page, 16_000)
    await asyncio.sleep(0.5)
    assert len(tries) == stopped  # no longer sent by itself
    await expect(page.locator("#unsent")).to_contain_text("2")  # the call waits behind it

    await stuck.locator("button.resend").click()  # tried again at once, still failing
    await eventually(lambda: len(tries) > stopped, "the resend")
    await expect(stuck).to_have_count(0)
    await retried_until_stuck(page)
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await stuck.locator("button.discard").click()
    await expect(stuck).to_have_count(1)  # not without saying so
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await stuck.locator("button.discard").click()
    await expect(stuck).to_have_count(0)
    # The case's call, held back until now, goes.
    await expect(page.locator("#unsent")).to_contain_text("0", timeout=15000)
    await expect(page.locator("#sent-list")).to_contain_text("call recorded: NO_ANSWER")
    status = await h.status(one.handle)
    assert status.counters.visits == 0 and status.unanswered_calls_today == 1
    await context.close()
    for case in (one, other):
        if case is one:
            await case.handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup"))
        await h.pay(case.handle, 1_000_000)
        await case.handle.result()


async def test_a_promise_is_kept_offline_and_sign_out_asks_while_anything_is_unsent(
    site, browser: Browser
) -> None:
    """Weak signal review, 7: the promise form is queued like the phone's other actions (its
    id applied once; its date and amount checked when it arrives); signing out, which clears
    the phone's data, asks first while anything is unsent, and stays signed in if told no."""
    from domain.timerules import local_date

    h, base = site
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector, display_name="张师傅")
    context = await browser.new_context(viewport=PHONE, is_mobile=True, service_workers="block")
    page = await context.new_page()
    await sign_in(page, base, "zhang", f"/cases/{case.loan_no}")
    await expect(page.locator("#unsent")).to_contain_text("0")
    promise_url = f"**/cases/{case.loan_no}/promise"
    await page.route(promise_url, lambda route: route.abort("internetdisconnected"))
    due = local_date(datetime.now(UTC), h.policy) + timedelta(days=3)
    await page.fill("#promise_amount", "500")
    await page.fill("#promise_date", due.isoformat())
    await page.select_option("#promise_source", "VISIT")
    await page.click("#promise-form button[type=submit]")
    await expect(page.locator("#unsent")).to_contain_text("1")
    await expect(page.locator("#unsent-list")).to_contain_text("Record a promise")

    messages: list[str] = []

    def answer(dialog, accept: bool) -> None:  # type: ignore[no-untyped-def]
        messages.append(dialog.message)
        asyncio.ensure_future(dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", lambda d: answer(d, False))
    await page.click("form[action='/logout'] button")
    await asyncio.sleep(0.5)
    assert messages and "1 条记录未发送" in messages[0] and "not sent" in messages[0]
    await expect(page.locator("#unsent")).to_contain_text("1")  # still signed in, still kept
    await expect(page.locator("h1")).not_to_contain_text("Sign in")

    queued = await page.evaluate("JSON.parse(localStorage.getItem('collection-queue:zhang'))")
    assert [f for f in queued[0]["fields"] if f[0] == "op_id"]
    await page.unroute(promise_url)
    await page.reload()  # opening the page sends the queue
    await expect(page.locator("#unsent")).to_contain_text("0", timeout=15000)
    await expect(page.locator("#sent-list")).to_contain_text("promise 1 recorded")
    again = await page.evaluate(  # the same action sent again (a lost answer): applied once
        """async ([url, fields]) => {
            const token = document.querySelector('[name=csrf]').value;
            const body = new URLSearchParams(fields.map(([k, v]) => [k, k === 'csrf' ? token : v]));
            const headers = {accept: 'application/json'};
            return (await fetch(url, {method: 'POST', headers, body})).json();
        }""",
        [queued[0]["url"], queued[0]["fields"]],
    )
    assert again["accepted"] and again["message"].startswith("promise 1 recorded: 500.00 yuan")
    assert len((await h.status(case.handle)).promises) == 1

    page.once("dialog", lambda d: answer(d, True))  # nothing unsent: no question
    await page.click("form[action='/logout'] button")
    await expect(page.locator("h1")).to_contain_text("Sign in")
    assert len(messages) == 1
    await context.close()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()
