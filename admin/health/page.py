"""Health: is herald working? The overall verdict with each problem, the last tick, schedules due
but not claimed, queues and workers, stuck runs, failure rates per channel, the render browsers,
and the runs due per minute over the next 24 hours, so a pile-up shows before it happens.

Every role sees it (`services.health`). The figures are herald's, across all tenants, and carry no tenant's names
or recipients; only the chosen tenant's stuck runs are named, with a link to their story. The
body is a fragment that reruns itself every 30 s with a session of its own (the app's session
belongs to a whole run), checking the viewer's session again each time without counting as
their interaction: a session that ended, went idle or lost the tenant stops it and shows the
login page. The agenda is counted at most once a minute for all visitors.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from admin import ui
from admin.format import both_zones, md
from admin.health import view
from models.db import session_scope
from models.health import RENDER_BROWSER_TTL_SECONDS
from models.settings import get_settings
from models.tenancy import Tenant
from services.agenda import Agenda, agenda
from services.health import (
    HealthReport,
    StuckRun,
    check_health,
    local_chromium,
    read_broker_info,
    read_render_browsers_or_none,
    tenant_stuck_runs,
)


@st.cache_data(ttl=view.AGENDA_TTL_SECONDS, show_spinner=False)
def next_day(database: str, minute: datetime) -> Agenda:
    """The agenda from `minute`; the same for every visitor, as it is system-wide."""
    with session_scope(database) as session:
        return agenda(session, minute)


@st.cache_data(ttl=view.LOCAL_CHROMIUM_TTL_SECONDS, show_spinner=False)
def chromium_here(chromium_path: str | None) -> tuple[str | None, str | None]:
    return local_chromium(get_settings())


def page() -> None:
    _viewer, tenant = ui.current()
    st.title("Health")
    body(tenant)


@st.fragment(run_every=view.REFRESH)
def body(tenant: Tenant) -> None:
    viewer = ui.recheck(tenant.id, seen=False)  # the fragment's own reruns skip admin/app.py
    if viewer is None:
        st.rerun(scope="app")
    at = view.now()
    zone = ZoneInfo(tenant.timezone)
    settings = get_settings()
    broker, render_browsers = read_broker_info(settings, at), read_render_browsers_or_none(settings)
    with session_scope() as session:
        report = check_health(session, at, broker, settings, render_browsers)
        mine = tenant_stuck_runs(session, viewer, tenant.id, report.stuck_runs)
    overall(report, at, zone)
    tick(report, zone)
    queues(report)
    stuck(report, mine, tenant, zone)
    failures(report)
    browsers(report, zone)
    next_24_hours(at, zone)


def overall(report: HealthReport, at: datetime, zone: ZoneInfo) -> None:
    if not report.healthy:
        st.error("\n".join(f"- {md(problem)}" for problem in report.problems))
    if report.attention:
        st.warning("\n".join(f"- {md(item)}" for item in report.attention))
    if report.healthy and not report.attention:
        st.success("Healthy: the tick is on time, nothing is due or stuck, no channel is failing.")
    st.caption(f"Checked {both_zones(at, zone)}; this page refreshes every "
               f"{int(view.REFRESH.total_seconds())} s. The figures are for all of herald.")


def tick(report: HealthReport, zone: ZoneInfo) -> None:
    st.subheader("Tick")
    facts = dict(view.tick_facts(report, zone))
    columns = st.columns(4)
    columns[0].metric("Last tick", facts["Last tick"])
    columns[1].metric("Tick took", facts.get("Took", "—"))
    columns[2].metric("Due, not claimed", report.due_not_claimed)
    columns[3].metric("Stuck runs", len(report.stuck_runs))
    if "At" in facts:
        st.caption(f"The last tick started {facts['At']} on {md(facts['Host'])}; "
                   f"{report.schedules} schedules exist.")


def queues(report: HealthReport) -> None:
    st.subheader("Queues and workers")
    broker = report.broker
    if broker is None:
        st.info("No REDIS_URL: herald runs embedded, in one process, so there are no queues.")
    elif broker.error:
        st.warning(f"Queue depths and workers are unknown: {md(broker.error)}.")
    else:
        st.dataframe(view.queues_table(broker.queues), hide_index=True)
        st.caption(f"{broker.processes_seen} Dramatiq processes seen in the last few seconds "
                   "(workers, and any process that enqueued).")


def stuck(report: HealthReport, mine: list[StuckRun], tenant: Tenant, zone: ZoneInfo) -> None:
    st.subheader("Stuck runs")
    if not report.stuck_runs:
        st.write("None: every queued run was picked up, every running one holds a live lease.")
        return
    st.write(f"Queued past the requeue delay, or holding an expired lease: run "
             f"{', '.join(str(i) for i in report.stuck_runs)}. The tick re-enqueues them.")
    if mine:
        st.markdown(f"Of them, {md(tenant.name)}'s:")
    for run in mine:
        since = f" since {both_zones(run.since, zone)}" if run.since else ""
        st.page_link("history/page.py", label=md(f"Run {run.id}: {run.report_title}, {run.status}{since}"),
                     query_params={"run": run.id, "tenant": tenant.slug})


def failures(report: HealthReport) -> None:
    st.subheader("Deliveries in the last 24 hours")
    if report.failures:
        st.dataframe(view.failures_table(report.failures), hide_index=True)
    else:
        st.write("No deliveries in the last 24 hours.")


def browsers(report: HealthReport, zone: ZoneInfo) -> None:
    st.subheader("Render browser")
    settings = get_settings()
    if settings.render_pdf_stub:
        st.info("PDFs are stubbed (RENDER_PDF_STUB=true): no browser is used.")
    elif report.render_browsers:
        st.dataframe(view.browsers_table(report.render_browsers, zone), hide_index=True)
    elif report.render_browsers is not None:
        st.write(f"No render process launched Chromium in the last {RENDER_BROWSER_TTL_SECONDS // 60} "
                 "minutes; a worker launches it for its first PDF.")
    elif report.broker is None:
        path, error = chromium_here(settings.chromium_path)
        if path:
            st.markdown(f"Embedded mode: PDFs are printed here, with the Chromium at {md(path)}.")
        else:
            st.warning(f"Embedded mode: PDFs are printed here, but there is no browser. "
                       f"{md(error or '')}")
    else:
        st.warning("The render browsers are unknown: Redis cannot be read.")


def next_24_hours(at: datetime, zone: ZoneInfo) -> None:
    st.subheader("Next 24 hours")
    coming = next_day(get_settings().database_url, at.replace(second=0, microsecond=0))
    st.caption(view.agenda_caption(coming))
    st.altair_chart(view.agenda_chart(coming, zone), width="stretch")
    if coming.busiest:
        st.write("Busiest minutes")
        st.dataframe(view.busiest_table(coming, zone), hide_index=True)


if __name__ == "__main__":
    page()
