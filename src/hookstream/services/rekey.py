"""``hookstream secrets rotate-key``: every stored secret re-encrypted under the first key of
HOOKSTREAM_SECRETS_KEY, in batches, while the service runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hookstream.errors import HookstreamError
from hookstream.security.secretbox import SecretBox, UndecryptableSecret
from hookstream.storage.database import Database
from hookstream.storage.queries import ENCRYPTED_COLUMNS
from hookstream.storage.repository import Repository

BATCH = 500  # rows per transaction: short enough not to hold up the service's writers


class UndecryptableValue(HookstreamError):
    """A stored value that no key of HOOKSTREAM_SECRETS_KEY decrypts; says where it is."""

    def __init__(self, table: str, column: str, row_id: str, key_count: int) -> None:
        keys = "its key" if key_count == 1 else f"any of its {key_count} keys"
        super().__init__(
            f"{table}.{column} of row {row_id} cannot be decrypted with {keys}: add the key it "
            "was stored with to HOOKSTREAM_SECRETS_KEY (after the new one) and run again; "
            "the rows before it are re-encrypted already"
        )
        self.table = table
        self.column = column
        self.row_id = row_id


@dataclass
class ColumnCount:
    """What happened to the values of one encrypted column."""

    table: str
    column: str
    reencrypted: int = 0
    current: int = 0  # under the first key already: left as they are


async def rotate_key(
    db: Database,
    box: SecretBox,
    *,
    batch: int = BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> list[ColumnCount]:
    """Re-encrypt every encrypted value not yet under ``box``'s first key; counts per column.

    Values already under the first key are skipped, so running it again (or after an
    interruption) only does what is left. Raises UndecryptableValue at the first value that no
    key decrypts, after committing the batches before it.
    """
    counts = {
        (table, column): ColumnCount(table, column)
        for table, columns in ENCRYPTED_COLUMNS.items()
        for column in columns
    }
    for table, columns in ENCRYPTED_COLUMNS.items():
        after = ""
        while True:
            done: list[tuple[str, bool]] = []  # (column, re-encrypted) of this batch
            async with db.write() as conn:
                repo = Repository(conn)
                rows = await repo.encrypted_values(table, after, batch)
                for row in rows:
                    changed: dict[str, str] = {}
                    for column in columns:
                        value = row._mapping[column]
                        if value is None:
                            continue
                        if box.is_primary(value):
                            done.append((column, False))
                            continue
                        try:
                            changed[column] = box.rotate(value)
                        except UndecryptableSecret:
                            raise UndecryptableValue(
                                table, column, row.id, box.key_count
                            ) from None
                        done.append((column, True))
                    if changed:
                        await repo.update_encrypted_values(table, row.id, changed)
            # Counted once committed: a batch that stopped on a bad value was rolled back.
            for column, reencrypted in done:
                count = counts[(table, column)]
                if reencrypted:
                    count.reencrypted += 1
                else:
                    count.current += 1
            if on_progress is not None and rows:
                on_progress(len(rows))
            if len(rows) < batch:
                break
            after = rows[-1].id
    return list(counts.values())
