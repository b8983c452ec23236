"""``python -m bench.queue_sql URL`` (PostgreSQL): the queue's two table shapes in SQL alone.

What PostgreSQL spends per delivery to enqueue, claim and record it, without hookstream around
it: the statements the worker issues (claims of 256 leased with ``FOR UPDATE SKIP LOCKED``, a
batch of outcomes each), through asyncpg, against

- ``wide``: one ``deliveries`` table that a claim and an outcome both update, with the
  indexes it had before migration 0013 (eight, four of them partial on status or lease);
- ``queue``: the record (four indexes, none on what an outcome writes, fillfactor 85) and a
  narrow ``queue`` table that a claim leases and an outcome deletes from (migration 0013),
  recorded as hookstream's recorder does today: per delivery, the record's update (while the
  queue row shows the lease) and the queue row's delete, each an executemany;
- ``queue1``: the same tables, recorded with one ``DELETE ... WHERE delivery_id = ANY(...) AND
  lease_id = ... RETURNING`` per batch, then the records of the rows it returned.

Prints deliveries/s and the PostgreSQL backend's CPU per delivery (read from /proc: run it on
the database's machine), and the table's heap-only updates so far (counted since the schema
was made, so they add up over rounds). The tables live in a
scratch schema, ``bench_queue_sql``, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import asyncpg

SCHEMA = "bench_queue_sql"
COLUMNS = (
    "id varchar(40) primary key, org_id varchar(40) not null, message_id varchar(40) not null,"
    " connector_id varchar(40) not null, kind varchar(16) not null,"
    " device_id varchar(256) not null, status varchar(16) not null,"
    " attempts int not null default 0, next_attempt_at bigint not null, lease_id varchar(40),"
    " last_status_code int, last_error text, replay_of varchar(40), batch_id varchar(40),"
    " created_at bigint not null, updated_at bigint not null"
)
DDL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
SET search_path = {SCHEMA};
CREATE TABLE wide ({COLUMNS});
CREATE INDEX ON wide (message_id);
CREATE INDEX ON wide (org_id, id);
CREATE INDEX ON wide (connector_id, status);
CREATE INDEX ON wide (batch_id);
CREATE INDEX ON wide (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ON wide (connector_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX ON wide (connector_id, device_id, message_id) WHERE status IN ('pending', 'held');
CREATE INDEX ON wide (connector_id) WHERE lease_id IS NOT NULL;
CREATE TABLE record ({COLUMNS}) WITH (fillfactor = 85);
CREATE INDEX ON record (message_id);
CREATE INDEX ON record (org_id, id);
CREATE INDEX ON record (connector_id, id);
CREATE INDEX ON record (batch_id);
CREATE TABLE queue (delivery_id varchar(40) primary key, connector_id varchar(40) not null,
  device_id varchar(256) not null, message_id varchar(40) not null, kind varchar(16) not null,
  due_at bigint not null, lease_id varchar(40), attempts int not null default 0,
  batch_id varchar(40), created_at bigint not null) WITH (fillfactor = 70);
CREATE INDEX ON queue (connector_id, due_at);
CREATE INDEX ON queue (connector_id, device_id, message_id);
CREATE INDEX ON queue (batch_id);
"""
INSERT = "INSERT INTO {table} VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
CLAIM = {
    "wide": "UPDATE wide SET next_attempt_at = 999999, lease_id = $1, updated_at = 5"
            " WHERE id IN (SELECT id FROM wide WHERE connector_id = 'con1'"
            " AND status = 'pending' AND next_attempt_at <= 10 ORDER BY next_attempt_at"
            " LIMIT 256 FOR UPDATE SKIP LOCKED)"
            " RETURNING id, message_id, connector_id, kind, attempts, batch_id",
    "queue1": "",
    "queue": "UPDATE queue SET due_at = 999999, lease_id = $1 WHERE delivery_id IN"
             " (SELECT delivery_id FROM queue WHERE connector_id = 'con1' AND due_at <= 10"
             " ORDER BY due_at LIMIT 256 FOR UPDATE SKIP LOCKED)"
             " RETURNING delivery_id, message_id, connector_id, kind, attempts, batch_id",
}


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(url: str, shape: str, count: int) -> str:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"SET search_path = {SCHEMA}")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("TRUNCATE wide, record, queue")
        rows = [(f"dlv_{i:08d}", "org1", f"msg_{i:08d}", "con1", "values", f"dev{i % 50}",
                 "pending", 0, 1, None, None, None, None, None, 1, 1) for i in range(count)]
        for i in range(0, count, 1000):
            async with conn.transaction():
                if shape == "wide":
                    await conn.executemany(INSERT.format(table="wide"), rows[i:i + 1000])
                else:
                    await conn.executemany(INSERT.format(table="record"), rows[i:i + 1000])
                    await conn.executemany(
                        "INSERT INTO queue (delivery_id, connector_id, device_id, message_id,"
                        " kind, due_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                        [(r[0], r[3], r[5], r[2], r[4], r[8], r[14]) for r in rows[i:i + 1000]])
        started, cpu0, done, lease = time.perf_counter(), backend_cpu(pid), 0, 0
        while True:
            lease += 1
            lease_id = f"lse{lease}"
            async with conn.transaction():
                claimed = await conn.fetch(CLAIM["queue" if shape == "queue1" else shape],
                                           lease_id)
            if not claimed:
                break
            ids = [c[0] for c in claimed]
            done += len(ids)
            async with conn.transaction():
                if shape == "wide":
                    await conn.executemany(
                        "UPDATE wide SET status = 'delivered', attempts = $3,"
                        " last_status_code = 204, last_error = NULL, lease_id = NULL,"
                        " updated_at = 6 WHERE id = $1 AND lease_id = $2",
                        [(i, lease_id, 1) for i in ids])
                elif shape == "queue1":
                    # One statement deletes the batch's queue rows still leased; the records
                    # of those it returns are updated.
                    gone = await conn.fetch(
                        "DELETE FROM queue WHERE delivery_id = ANY($1::varchar[])"
                        " AND lease_id = $2 RETURNING delivery_id", ids, lease_id)
                    await conn.executemany(
                        "UPDATE record SET status = 'delivered', attempts = $2,"
                        " last_status_code = 204, last_error = NULL, updated_at = 6"
                        " WHERE id = $1", [(g[0], 1) for g in gone])
                else:
                    await conn.executemany(
                        "UPDATE record SET status = 'delivered', attempts = $3,"
                        " last_status_code = 204, last_error = NULL, updated_at = 6"
                        " WHERE id = $1 AND EXISTS (SELECT 1 FROM queue"
                        " WHERE delivery_id = $1 AND lease_id = $2)",
                        [(i, lease_id, 1) for i in ids])
                    await conn.executemany(
                        "DELETE FROM queue WHERE delivery_id = $1 AND lease_id = $2",
                        [(i, lease_id) for i in ids])
        seconds, cpu = time.perf_counter() - started, backend_cpu(pid) - cpu0
        hot = await conn.fetchval(
            "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = $1"
            " AND relname = $2", SCHEMA, "wide" if shape == "wide" else "record")
        return (f"{shape:6} claim + record: {done / seconds:8,.0f} deliveries/s, PostgreSQL "
                f"CPU {cpu / done * 1e6:5.0f} µs a delivery, heap-only updates {hot:,} of "
                f"{done:,}")
    finally:
        await conn.close()


async def main(url: str, count: int, rounds: int) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(DDL)
    try:
        for _ in range(rounds):  # interleaved: the machine's drift hits both shapes alike
            for shape in ("wide", "queue", "queue1"):
                print(await run(url, shape, count), flush=True)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="PostgreSQL URL (postgresql://user@host/db)")
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.deliveries, args.rounds))
