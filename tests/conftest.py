"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL tests need ``HOOKSTREAM_TEST_POSTGRESQL_URL`` (e.g.
``postgresql://postgres@127.0.0.1:5432/test``); without it they are skipped, saying why,
unless ``HOOKSTREAM_TEST_REQUIRE_SERVICES=1`` (set by .ci/run), which makes them fail.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hookstream.settings import Settings
from tests.support import (
    PG_ENV,
    REQUIRE_ENV,
    Org,
    PostgresTemplates,
    Receiver,
    Service,
    SqliteTemplate,
    base_settings,
    pg_url,
    running_receiver,
    running_service,
)

BACKENDS = ["sqlite", "postgresql"]


def unavailable(what: str, why: str) -> None:
    """Skip a test whose service is missing, or fail it when services are required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what} is required here ({REQUIRE_ENV}=1) but {why}")
    pytest.skip(f"{what}: {why}")


# How long a task left running by a test gets to end once cancelled at the test's end.
LEFTOVER_GRACE = 30.0


@pytest.fixture(autouse=True)
async def tasks_end_with_their_test() -> AsyncIterator[None]:
    """A task the test left running is cancelled here; one that will not end fails the test.

    Without this, pytest-asyncio's close of the test's loop cancels what is left and waits for
    it without a limit: a task that swallows its cancellation hangs the whole run (a CI run
    hung so, with no test named)."""
    yield
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if not left:
        return
    for task in left:
        task.cancel()
    _, stuck = await asyncio.wait(left, timeout=LEFTOVER_GRACE)
    if not stuck:
        return
    stacks = io.StringIO()
    for task in stuck:
        task.print_stack(file=stacks)
        # Out of the loop's set of tasks, so that closing the loop does not wait for it.
        asyncio.tasks._unregister_task(task)
    pytest.fail(f"{len(stuck)} task(s) the test left did not end within {LEFTOVER_GRACE:g} s "
                f"of being cancelled:\n{stacks.getvalue()}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    template = SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))
    template.create_template()
    return template


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[PostgresTemplates | None]:
    url = pg_url()
    if url is None:
        yield None
        return
    templates = PostgresTemplates(url)
    try:
        templates.create_template()
    except Exception as exc:  # noqa: BLE001 - reported by the tests that need it
        templates.error = exc  # type: ignore[attr-defined]
        yield templates
        return
    yield templates
    templates.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql":
        request.node.add_marker(pytest.mark.postgresql)
    return name


@pytest.fixture
async def database_url(
    backend: str,
    tmp_path: Path,
    sqlite_template: SqliteTemplate,
    pg_templates: PostgresTemplates | None,
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield sqlite_template.new_database(tmp_path)
        return
    if pg_templates is None:
        unavailable("PostgreSQL", f"{PG_ENV} is not set")
        return
    error = getattr(pg_templates, "error", None)
    if error is not None:
        unavailable("PostgreSQL", f"it cannot be reached at {pg_templates.url}: {error}")
    url = await pg_templates.new_database()
    yield url
    await pg_templates.drop(url)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the service's settings."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    return base_settings(database_url, data_dir=tmp_path / "var", **settings_overrides)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with running_service(settings) as svc:
        yield svc


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as rec:
        yield rec


@pytest.fixture
async def org(service: Service) -> AsyncIterator[Org]:
    o = await service.new_org()
    yield o
    await o.api.aclose()
