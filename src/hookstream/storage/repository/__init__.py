"""The repository: one method per named query of ``storage/queries/``, on one connection.

Open a transaction with ``Database.write()`` (or ``read()``) and wrap its connection::

    async with db.write() as conn:
        repo = Repository(conn)

The methods come by concern, one mixin each, as the statements do: ``pipeline``, ``tenancy``,
``thermostat``, ``oauth``, ``retention``; ``_base`` holds the connection and the helpers.
"""

from __future__ import annotations

from hookstream.storage.repository._base import Rows as Rows
from hookstream.storage.repository._base import _Base
from hookstream.storage.repository.oauth import OAuthQueries
from hookstream.storage.repository.pipeline import CLAIM_LOCK as CLAIM_LOCK
from hookstream.storage.repository.pipeline import PipelineQueries
from hookstream.storage.repository.retention import RetentionQueries
from hookstream.storage.repository.tenancy import TenancyQueries
from hookstream.storage.repository.thermostat import ThermostatQueries


class Repository(
    PipelineQueries, TenancyQueries, ThermostatQueries, OAuthQueries, RetentionQueries, _Base
):
    """Every method of the concern mixins on one connection (``Repository(conn)``)."""
