"""The schema, shared by SQLite and PostgreSQL. Times are epoch milliseconds (BIGINT)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    # Key rotation: the previous key keeps working until it expires (NULL: none).
    Column("previous_api_key_hash", String(64), unique=True),
    Column("previous_api_key_expires_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
)

gateways = Table(
    "gateways",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("external_id", String(200)),
    Column("ingest_token_hash", String(64), nullable=False, unique=True),
    Column("previous_token_hash", String(64), unique=True),
    Column("previous_token_expires_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "id"),
)

connectors = Table(
    "connectors",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("base_url", String(2048), nullable=False),
    Column("route_values", String(1024), nullable=False),
    Column("route_events", String(1024), nullable=False),
    Column("route_alarms", String(1024), nullable=False),
    Column("secret_enc", Text, nullable=False),
    Column("auth_type", String(40), nullable=False),
    Column("auth_public", Text, nullable=False),  # JSON: the parts that may be shown
    Column("auth_secret_enc", Text),  # encrypted JSON: the credentials
    Column("active", Boolean, nullable=False),
    Column("deactivated_reason", Text),
    # Secret rotation: the previous secret still signs until it expires.
    Column("previous_secret_enc", Text),
    Column("previous_secret_expires_at", BigInteger),
    # Delivery policy; NULL means the deployment's setting.
    Column("retry_schedule", Text),  # JSON list of seconds
    Column("max_attempts", Integer),
    Column("connect_timeout", Float),
    Column("request_timeout", Float),
    Column("headers_enc", Text),  # encrypted JSON object of static headers
    Column("header_names", Text),  # JSON list: what may be shown of them
    # Set at the first failed attempt after a success; cleared by the next success.
    Column("failing_since", BigInteger),
    # Backpressure across every worker: requests in flight, and a token bucket per second.
    Column("max_concurrency", Integer),
    Column("rate_limit", Float),
    Column("rate_tokens", Float),
    Column("rate_updated_at", BigInteger),
    # "per_device": one device's messages are delivered strictly in ingest order.
    Column("ordering", String(16)),
    # "alerts": the organization's operational alerts endpoint, hidden from connector lists.
    Column("system", String(16)),
    # Where deliveries go: NULL or "http" (base_url and the routes), "mqtt", "amqp" or "nats"
    # (target_public: JSON of what may be shown; target_secret_enc: encrypted JSON of the
    # broker credentials).
    Column("type", String(16)),
    Column("target_public", Text),
    Column("target_secret_enc", Text),
    # Reshaping the body sent: language ("jsonata") and expression; NULL when none.
    Column("transform_language", String(16)),
    Column("transform_expression", Text),
    # Batching: up to batch_max_messages in one POST, waiting at most batch_max_wait_ms.
    Column("batch_max_messages", Integer),
    Column("batch_max_wait_ms", Integer),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "id"),
)

triggers = Table(
    "triggers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("connector_id", String(40), ForeignKey("connectors.id"), nullable=False),
    Column("kinds", String(64), nullable=False),  # comma-separated kinds
    Column("all_gateways", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "connector_id"),
)

trigger_gateways = Table(
    "trigger_gateways",
    metadata,
    Column("trigger_id", String(40), ForeignKey("triggers.id", ondelete="CASCADE"),
           primary_key=True),
    Column("gateway_id", String(40), ForeignKey("gateways.id"), primary_key=True),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), nullable=False),
    Column("gateway_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("device_id", String(256), nullable=False),
    Column("body", LargeBinary, nullable=False),  # the delivered JSON, byte for byte
    Column("accepted_at", BigInteger, nullable=False),
    # MQTT: SHA-256 of gateway, kind and payload of the publish this message came in (on the
    # first message of it), so a redelivered publish is recognised and stored once.
    Column("source_digest", String(64), nullable=True),
    # The W3C traceparent its deliveries continue (tracing.py): the ingest span's, or the
    # gateway's own when tracing is off; null when neither.
    Column("traceparent", String(55), nullable=True),
    Index(None, "org_id", "id"),
    Index(None, "gateway_id", "source_digest"),
    Index(None, "org_id", "device_id", "id"),
    Index(None, "org_id", "gateway_id", "id"),
)

# A delivery's record: what the logs show. Written when it is enqueued and when an attempt
# ends; a claim does not touch it (that is the queue's row). No index holds ``status`` or the
# columns an outcome writes, so on PostgreSQL writing an outcome is a heap-only (HOT) update
# that adds no index entry (fillfactor leaves room on each page for it).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), nullable=False),
    Column("message_id", String(40), nullable=False),
    Column("connector_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("device_id", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("replay_of", String(40)),
    # Deliveries sent together in one POST share a batch id (its webhook-id) and every retry.
    Column("batch_id", String(40)),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(None, "message_id"),
    Index(None, "org_id", "id"),
    Index(None, "connector_id", "id"),
    Index(None, "batch_id"),
    postgresql_with={"fillfactor": 85},
)

# The work to do: one narrow row per open delivery (pending or held), from its enqueueing
# until its last attempt ends; a claim leases rows here, an outcome deletes its row (or sets
# when it is due again). ``due_at`` is when it falls due, the lease's end while it is leased,
# and QUEUE_HELD while its connector is switched off.
queue = Table(
    "queue",
    metadata,
    Column("delivery_id", String(40), primary_key=True),
    Column("connector_id", String(40), nullable=False),
    Column("device_id", String(256), nullable=False),
    Column("message_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("lease_id", String(40)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("batch_id", String(40)),
    Column("created_at", BigInteger, nullable=False),
    # A connector's rows in the order they fall due: the claim, the toggle, the metrics.
    Index(None, "connector_id", "due_at"),
    # Per-device ordering: is an earlier delivery of this device still open?
    Index(None, "connector_id", "device_id", "message_id"),
    Index(None, "batch_id"),
    postgresql_with={"fillfactor": 70},
)
# ``queue.due_at`` of a held delivery: never due, until its connector is switched on again.
QUEUE_HELD = 2**62

# Ingest requests already answered, by (gateway, Idempotency-Key): a repeat gets the same answer.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("gateway_id", String(40), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "created_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("delivery_id", String(40), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer),
    Column("response_body", Text),
    Column("error", Text),
    Index(None, "delivery_id"),
)

# A connector's attempts counted per 10 minutes, outcome and rounded duration: what its charts
# read (a few thousand rows a day, not every attempt). The recorder adds to it in the
# transaction that writes the attempts; retention drops what is older than two days.
attempt_counts = Table(
    "attempt_counts",
    metadata,
    Column("connector_id", String(40), primary_key=True),
    Column("period", BigInteger, primary_key=True),  # epoch ms, a multiple of 10 minutes
    Column("outcome", String(16), primary_key=True),  # delivered, refused, no_answer
    Column("duration_ms", Integer, primary_key=True),  # rounded: record.rollup.rounded
    Column("attempts", Integer, nullable=False),
    Index(None, "period"),
)

# --- the thermostat cloud ----------------------------------------------------------------

plants = Table(
    "plants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "id"),
)

modules = Table(
    "modules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("plant_id", String(40), ForeignKey("plants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    # The datastream messages that report this module's measures: from this gateway and device.
    Column("gateway_id", String(40)),
    Column("device_id", String(256)),
    Column("mapping", Text),  # JSON {measure: property}; NULL is the default mapping
    Column("state", Text, nullable=False),  # JSON, see thermostat.state.ModuleState
    # Incremented by every change: a write only lands on the version it read.
    Column("state_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "plant_id", "id"),
    Index(None, "gateway_id", "device_id"),
)

# An application's subscription to a plant: its notifications go through a connector of
# system "subscription" (the endpoint, signing secret, retries and attempt log of the engine).
plant_subscriptions = Table(
    "plant_subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("plant_id", String(40), ForeignKey("plants.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("connector_id", String(40), ForeignKey("connectors.id"), nullable=False),
    Column("endpoint_url", String(2048), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "plant_id"),
    Index(None, "org_id", "client_id"),
)

subscription_keys = Table(
    "subscription_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("previous_key_hash", String(64), unique=True),
    Column("previous_key_expires_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "id"),
)

# --- console users and OAuth2 ------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("email", String(320), nullable=False, unique=True),  # lower case
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("created_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger),
)

# A signed-in browser: the cookie holds a random token, the row its hash.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index(None, "user_id"),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("id", String(64), primary_key=True),  # the client_id
    Column("org_id", String(40), ForeignKey("organizations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64)),  # NULL for a public client
    Column("redirect_uris", Text, nullable=False),  # JSON list
    Column("public", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index(None, "org_id", "id"),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("org_id", String(40), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scope", String(200), nullable=False),
    Column("code_challenge", String(128)),
    Column("code_challenge_method", String(10)),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger),
)

# One row per issued access token (and its refresh token). A refresh makes a new row in the
# same family; a refresh token used twice revokes the whole family.
oauth_tokens = Table(
    "oauth_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("family_id", String(40), nullable=False),
    Column("access_hash", String(64), nullable=False, unique=True),
    Column("refresh_hash", String(64), unique=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("org_id", String(40), nullable=False),
    Column("scope", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("access_expires_at", BigInteger, nullable=False),
    Column("refresh_expires_at", BigInteger),
    Column("refresh_used_at", BigInteger),
    Column("revoked_at", BigInteger),
    Index(None, "family_id"),
)

# Who changed what, and when: connectors, triggers, keys, subscriptions, gateways.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), nullable=False),
    Column("actor", String(200), nullable=False),  # e.g. "api_key", "user:usr_...", "admin"
    Column("action", String(64), nullable=False),  # e.g. "connector.updated"
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(64), nullable=False),
    Column("details", Text),  # JSON: what changed (field names, never secret values)
    Column("created_at", BigInteger, nullable=False),
    Index(None, "org_id", "id"),
    Index(None, "org_id", "target_id", "id"),
)
