"""Every SQL statement hookstream runs, by concern (being split: all still in ``pipeline``)."""

from hookstream.storage.queries.pipeline import *  # noqa: F403
from hookstream.storage.queries.pipeline import ENCRYPTED_COLUMNS as ENCRYPTED_COLUMNS
from hookstream.storage.queries.pipeline import driver_sql as driver_sql
