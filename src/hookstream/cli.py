"""The ``hookstream`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from hookstream.errors import HookstreamError
from hookstream.settings import Settings, load_settings

T = TypeVar("T")

app = typer.Typer(
    help="hookstream: IoT gateways' data delivered to your web servers as signed webhooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
org_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
keys_app = typer.Typer(help="Generate keys for the settings.", no_args_is_help=True)
user_app = typer.Typer(help="Manage console users.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(keys_app, name="keys")
secrets_app = typer.Typer(help="Stored secrets: re-encrypt them under a new key.",
                          no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed; a HookstreamError exits 2 with its message."""
    try:
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:
            return asyncio.run(coro)
    except HookstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    try:
        return load_settings()
    except HookstreamError as exc:
        err.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _logging(settings: Settings) -> None:
    from hookstream.logs import configure

    configure(settings)


async def _start(
    settings: Settings, *, api: bool, worker: bool, migrate: bool, mqtt: bool = False,
    worker_processes: int = 0, api_processes: int = 1,
) -> None:
    from hookstream.roles import SUPERVISED, run_roles
    from hookstream.services.runtime import Runtime
    from hookstream.storage import migrate as migrations

    if migrate:
        await migrations.upgrade(settings)
    else:
        await migrations.ensure_current(settings)
    runtime = await Runtime.open(settings)
    try:
        local = None
        if api and migrate:  # serve: a fresh local trial gets a console user
            from hookstream.services.users import ensure_local_user

            local = await ensure_local_user(runtime)
        if not os.environ.get(SUPERVISED):  # serve's banner speaks for its workers
            _banner(runtime, api=api, worker=worker, mqtt=mqtt, local=local,
                    worker_processes=worker_processes, api_processes=api_processes)
        await run_roles(runtime, api=api, worker=worker, mqtt=mqtt,
                        worker_processes=worker_processes, api_processes=api_processes)
    finally:
        await runtime.close()


def _banner(runtime: Any, *, api: bool, worker: bool, mqtt: bool, local: Any = None,
            worker_processes: int = 0, api_processes: int = 1) -> None:
    s: Settings = runtime.settings
    workers = (f"{worker_processes} delivery worker process"
               + ("es" if worker_processes > 1 else "")) if worker_processes else ""
    api_name = f"api ({api_processes} processes)" if api_processes > 1 else "api"
    roles = " + ".join(
        r for r, on in ((api_name, api), ("delivery worker", worker), (workers, bool(workers)),
                        ("MQTT bridge", mqtt)) if on
    )
    db = s.database_url if s.is_sqlite else "PostgreSQL"
    out.print(f"[bold]hookstream[/] {roles} on {db}", highlight=False)
    if api:
        base = f"http://{s.listen}"
        out.print(f"  API        {base}/api/v1   (ingest: {base}/ingest/v1/{{kind}})",
                  highlight=False)
        out.print(f"  docs       {base}/docs   OpenAPI: {base}/openapi.json", highlight=False)
        out.print(f"  console    {base}/console", highlight=False)
        console_file = Path(s.data_dir) / "console.txt"
        if local is not None:
            out.print(f"  sign in    {local.email} / {local.password}   (generated now; shown "
                      f"once, kept in {local.file})", highlight=False)
        elif s.is_sqlite and console_file.exists():
            out.print(f"  sign in    see {console_file}", highlight=False)
    if mqtt and s.mqtt_url:
        from hookstream.mqtt.bridge import BridgeConfig

        out.print(f"  MQTT       {BridgeConfig.from_settings(s).describe()}", highlight=False)
    key_file = Path(s.data_dir) / "admin.key"
    if runtime.new_admin_key:
        out.print(f"  admin key  {runtime.new_admin_key}   (generated now; shown once"
                  + (f", kept in {key_file})" if s.is_sqlite else ")"), highlight=False)
    elif s.admin_key is not None:
        out.print("  admin key  from HOOKSTREAM_ADMIN_KEY", highlight=False)
    elif s.is_sqlite and key_file.exists():
        out.print(f"  admin key  {key_file.read_text().strip()}   (from {key_file})",
                  highlight=False)
    if s.allow_private_targets:
        out.print("  [yellow]HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true: webhooks may go to loopback "
                  "and private networks (local trial)[/]", highlight=False)


@app.command()
def serve() -> None:
    """Everything in one process: API, ingest, delivery workers and, when HOOKSTREAM_MQTT_URL
    is set, the MQTT bridge (migrates first)."""
    settings = _settings()
    _logging(settings)
    processes = settings.workers
    if processes is None:
        processes = 1 if (os.cpu_count() or 1) >= 2 else 0
    api_processes = settings.api_processes
    if api_processes is None:
        cores = os.cpu_count() or 1
        api_processes = 1 if cores < 4 else cores // 2
    with _shared_metrics(processes > 0 or api_processes > 1):
        _run(_start(settings, api=True, worker=not processes, migrate=True,
                    mqtt=settings.mqtt_url is not None, worker_processes=processes,
                    api_processes=api_processes))


@contextlib.contextmanager
def _shared_metrics(children: bool) -> Iterator[None]:
    """With child processes, counters of every process in one /metrics (prometheus_client's
    multiprocess mode), set before prometheus_client is first imported, here and in them."""
    if not children or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    metrics_dir = tempfile.mkdtemp(prefix="hookstream-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        yield
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def api() -> None:
    """The API and ingest only (in HOOKSTREAM_API_PROCESSES processes sharing its port, one
    unless set); run many against one PostgreSQL."""
    from hookstream.roles import LISTEN_FD

    settings = _settings()
    _logging(settings)
    # One of serve's (or api's) API processes runs just itself.
    processes = 1 if os.environ.get(LISTEN_FD) else (settings.api_processes or 1)
    with _shared_metrics(processes > 1):
        _run(_start(settings, api=True, worker=False, migrate=False, api_processes=processes))


@app.command()
def worker() -> None:
    """A delivery worker only; run many against one PostgreSQL."""
    settings = _settings()
    _logging(settings)
    _run(_start(settings, api=False, worker=True, migrate=False))


@app.command()
def mqtt() -> None:
    """The MQTT bridge only (needs HOOKSTREAM_MQTT_URL); run several with a shared group."""
    settings = _settings()
    if settings.mqtt_url is None:
        err.print("[bold red]configuration error:[/] HOOKSTREAM_MQTT_URL is not set "
                  "(e.g. mqtt://hookstream-bridge:PASSWORD@127.0.0.1:1883)", highlight=False)
        raise typer.Exit(2)
    _logging(settings)
    _run(_start(settings, api=False, worker=False, migrate=False, mqtt=True))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from hookstream.storage import migrate as migrations

    settings = _settings()
    revision = _run(migrations.upgrade(settings))
    out.print(f"database at revision {revision}", highlight=False)


@org_app.command("create")
def org_create(name: Annotated[str, typer.Argument(help="The organization's name")]) -> None:
    """Create an organization; prints {"id","name","apiKey"} (the key is shown this once)."""
    from hookstream.services import organizations
    from hookstream.services.runtime import Runtime
    from hookstream.storage import migrate as migrations

    if not name.strip() or len(name) > 200:
        err.print("[bold red]error:[/] NAME must be 1 to 200 characters", highlight=False)
        raise typer.Exit(2)
    settings = _settings()

    async def go() -> dict[str, Any]:
        await migrations.ensure_current(settings)
        runtime = await Runtime.open(settings)
        try:
            return await organizations.create(runtime, name)
        finally:
            await runtime.close()

    print(json.dumps(_run(go())))


def _read_new_password() -> str:
    """The password from standard input: asked twice on a terminal, else its first line."""
    import getpass
    import sys

    if sys.stdin.isatty():
        try:
            first = getpass.getpass("Password: ")
            again = getpass.getpass("Password (again): ")
        except EOFError:
            raise typer.Exit(1) from None
        if again != first:
            err.print("[bold red]error:[/] the passwords do not match", highlight=False)
            raise typer.Exit(1)
        return first
    return sys.stdin.readline().rstrip("\r\n")


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option(help="The id of the user's organization (org_...)")],
    email: Annotated[str, typer.Option(help="The email the user signs in with")],
) -> None:
    """Create a console user; the password is read from standard input (asked twice on a
    terminal). Prints {"id","orgId","email"}."""
    from rich.markup import escape

    from hookstream.errors import Refused
    from hookstream.security.passwords import check_password_strength
    from hookstream.services.users import check_email, create_user
    from hookstream.storage import migrate as migrations
    from hookstream.storage.database import Database, database_errors

    settings = _settings()
    try:
        check_email(email)
        password = _read_new_password()
        check_password_strength(password)
    except Refused as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(1) from None

    async def go() -> dict[str, str] | str:
        await migrations.ensure_current(settings)
        db = Database(settings, pool_size=1)
        try:
            async with database_errors(settings.database_url):
                user = await create_user(db, org, email, password)
        except Refused as exc:  # unknown organization, email taken
            return exc.message
        finally:
            await db.dispose()
        return {"id": user.id, "orgId": user.org_id, "email": user.email}

    result = _run(go())
    if isinstance(result, str):
        err.print(f"[bold red]error:[/] {escape(result)}", highlight=False)
        raise typer.Exit(1)
    print(json.dumps(result))


@app.command()
def receive(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    secret: Annotated[
        str | None, typer.Option(help="The connector's whsec_ secret: check every signature")
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="Exit after this many accepted webhooks (repeats included)")
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="SQLite file (created if missing) where each accepted webhook is "
                          "written before it is answered; a repeated webhook-id is not stored "
                          "again", dir_okay=False),
    ] = None,
    status: Annotated[
        int, typer.Option(min=200, max=599,
                          help="HTTP status to answer every accepted webhook with, e.g. 500 to "
                               "watch retries (non-2xx answers are not stored)")
    ] = 204,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Print no line per accepted webhook, only the final "
                                           "count")
    ] = False,
) -> None:
    """A small webhook receiver for trying hookstream: checks signatures, prints and stores them.

    It exits after --count webhooks, or on Ctrl-C or SIGTERM, printing how many it received.
    """
    from hookstream.pipeline.deliver.signing import InvalidSecret, secret_key
    from hookstream.tools.receiver import serve as serve_receiver

    if secret is not None:
        try:
            secret_key(secret)
        except InvalidSecret as exc:
            err.print(f"[bold red]error:[/] --secret: {exc}", highlight=False)
            raise typer.Exit(2) from None

    def emit(line: str) -> None:
        print(line, flush=True)

    try:
        _run(serve_receiver(host, port, secret, count, emit, status=status, store=store,
                            quiet=quiet))
    except KeyboardInterrupt:
        # Ctrl-C before the receiver was listening (afterwards it is handled inside).
        raise typer.Exit(0) from None
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot listen on {host}:{port}: {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def replay(
    connector: Annotated[str, typer.Option(help="The connector's id (con_...)")],
    org: Annotated[str, typer.Option(help="The id of the organization that owns the connector")],
    since: Annotated[
        str, typer.Option(help="RFC 3339: replay deliveries created from this time, e.g. "
                               "2026-01-31T12:00:00Z")
    ],
    until: Annotated[
        str | None, typer.Option(help="RFC 3339: ... and before this time (default: now)")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="pending, delivered, failed, held or cancelled; repeat for several "
                          "(default: delivered, failed and cancelled)"),
    ] = None,
) -> None:
    """Replay a connector's deliveries in a time range: each message is sent again with its
    webhook-id (new deliveries, held while the connector is off). Works on the database
    directly, in batches of 1000, with no cap on the number of deliveries."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hookstream.pipeline.record.replay import (
        check_range,
        ensure_organization,
        parse_statuses,
        replay_connector,
    )
    from hookstream.services.times import parse_time
    from hookstream.storage import migrate as migrations
    from hookstream.storage.database import Database, database_errors

    try:
        since_ms = parse_time(since, "--since")
        until_ms = parse_time(until, "--until")
        statuses = parse_statuses(status or None, "--status")
        assert since_ms is not None
        check_range(since_ms, until_ms)
    except (HookstreamError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    settings = _settings()

    async def go() -> tuple[int, int]:
        await migrations.ensure_current(settings)
        db = Database(settings, pool_size=2)
        try:
            async with database_errors(settings.database_url):
                await ensure_organization(db, org)
                with Progress(
                    TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True,
                ) as progress:
                    task = progress.add_task("replay", total=None)
                    result = await replay_connector(
                        db, org, connector, since_ms=since_ms, until_ms=until_ms,
                        statuses=statuses,
                        on_total=lambda total: progress.update(task, total=total),
                        on_progress=lambda n: progress.advance(task, n),
                    )
                return result.replayed, result.held
        finally:
            await db.dispose()

    replayed, held = _run(go())
    out.print(f"replayed {replayed} deliveries of connector {connector}", highlight=False)
    if held:
        out.print(f"{held} of them are held until the connector is switched on",
                  highlight=False)


@keys_app.command("secrets")
def keys_secrets() -> None:
    """Print a new value for HOOKSTREAM_SECRETS_KEY.

    To rotate the key, set NEW,OLD in every process, then run hookstream secrets rotate-key.
    """
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


@secrets_app.command("rotate-key")
def secrets_rotate_key(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction")] = 500,
) -> None:
    """Re-encrypt every stored secret under the first key of HOOKSTREAM_SECRETS_KEY.

    First give every process HOOKSTREAM_SECRETS_KEY=NEW,OLD (README: Secrets at rest).

    It runs while they serve. Values under the first key already are skipped: run it again freely.

    Exits 1, naming table, column and row, at a value that no key decrypts.
    """
    from rich.markup import escape

    from hookstream.security.secretbox import SecretBox, load_secrets_key
    from hookstream.services.rekey import ColumnCount, UndecryptableValue, rotate_key
    from hookstream.storage import migrate as migrations
    from hookstream.storage.database import Database, database_errors

    settings = _settings()
    key_file = Path(settings.data_dir) / "secrets.key"
    if settings.secrets_key is None and not (settings.is_sqlite and key_file.exists()):
        # load_secrets_key would generate a key, under which nothing stored decrypts.
        err.print(f"[bold red]error:[/] HOOKSTREAM_SECRETS_KEY is not set and {key_file} does "
                  "not exist: set HOOKSTREAM_SECRETS_KEY=NEW,OLD", highlight=False)
        raise typer.Exit(2)

    async def go() -> tuple[SecretBox, list[ColumnCount] | UndecryptableValue]:
        box = SecretBox(load_secrets_key(settings))  # a malformed key before the database
        await migrations.ensure_current(settings)
        db = Database(settings, pool_size=1)
        try:
            async with database_errors(settings.database_url):
                return box, await rotate_key(db, box, batch=batch)
        except UndecryptableValue as exc:
            return box, exc
        finally:
            await db.dispose()

    box, result = _run(go())
    if isinstance(result, UndecryptableValue):
        err.print(f"[bold red]error:[/] {escape(str(result))}", highlight=False)
        raise typer.Exit(1)
    for count in result:
        out.print(f"{count.table}.{count.column}: {count.reencrypted} re-encrypted, "
                  f"{count.current} already under the first key", highlight=False)
    total = sum(c.reencrypted for c in result)
    keys = "the only key" if box.key_count == 1 else f"the first of {box.key_count} keys"
    out.print(f"re-encrypted {total} values under {keys} of HOOKSTREAM_SECRETS_KEY",
              highlight=False)


@app.command()
def simulate(
    api: Annotated[str, typer.Option(help="The hookstream API")] = "http://127.0.0.1:8000",
    gateways: Annotated[
        int | None, typer.Option(min=1, max=1000, help="Gateways (default: 5 with --setup, "
                                                       "else every gateway of --state)")
    ] = None,
    devices: Annotated[int, typer.Option(min=1, max=1000, help="Devices per gateway")] = 4,
    rate: Annotated[
        float, typer.Option(min=0.01, max=1_000_000, help="Messages per second, all gateways "
                                                          "together")
    ] = 20.0,
    duration: Annotated[
        float, typer.Option(min=0, help="Seconds to run; 0 runs until Ctrl-C")
    ] = 60.0,
    transport: Annotated[str, typer.Option(help="http or mqtt")] = "http",
    batch: Annotated[
        int, typer.Option(min=1, max=1000, help="HTTP: messages per POST (a JSON array)")
    ] = 1,
    mqtt_url: Annotated[
        str, typer.Option(help="The MQTT broker, mqtt:// or mqtts://, without credentials "
                               "(each gateway signs in as its id with its ingest token)")
    ] = "mqtt://127.0.0.1:1883",
    state: Annotated[
        Path, typer.Option(help="What --setup made (keys and tokens; mode 0600)")
    ] = Path("var/simulate.json"),
    setup: Annotated[
        bool, typer.Option("--setup", help="First create an organization, the gateways, a "
                                           "connector to --receiver and a trigger")
    ] = False,
    admin_key: Annotated[
        str | None, typer.Option(envvar="HOOKSTREAM_ADMIN_KEY", show_envvar=True,
                                 help="For --setup (default: var/admin.key, which make run "
                                      "writes)")
    ] = None,
    receiver: Annotated[
        str, typer.Option(help="--setup: the connector's base URL")
    ] = "http://127.0.0.1:9000",
    secret: Annotated[
        str | None, typer.Option(help="--setup: the connector's whsec_ signing secret "
                                      "(default: a new one)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Make the same data again")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No live display, only the summary")
    ] = False,
    mosquitto_passwords: Annotated[
        Path | None, typer.Option(help="--setup: add the new gateways to this Mosquitto "
                                       "password file (runs mosquitto_passwd; the broker must "
                                       "then reload it)")
    ] = None,
) -> None:
    """Simulate a fleet: N gateways of M devices sending values, events and alarms at a steady
    rate, over HTTP or MQTT; --setup first creates what they need (and a connector to a local
    receiver). Shows live counts and ends with a summary (accepted, refused, rates, latency)."""
    from hookstream.tools.simulate import SimulateOptions, run_simulation

    if transport not in ("http", "mqtt"):
        err.print("[bold red]error:[/] --transport must be http or mqtt", highlight=False)
        raise typer.Exit(2)
    options = SimulateOptions(
        api=api, gateways=gateways, devices=devices, rate=rate, duration=duration,
        transport=transport, batch=batch, mqtt_url=mqtt_url, state=state, setup=setup,
        admin_key=admin_key, receiver=receiver, secret=secret, seed=seed, quiet=quiet,
        mosquitto_passwords=mosquitto_passwords,
    )
    try:
        code = _run(run_simulation(options, out, err))
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def main() -> None:
    app()
