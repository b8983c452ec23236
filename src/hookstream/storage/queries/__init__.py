"""Every SQL statement hookstream runs, each under a name (SQLAlchemy Core, both dialects).

By concern, each module's names re-exported here (``from hookstream.storage import queries as q;
q.get_meta``):

- ``pipeline``: messages, deliveries (claim, batch, outcome), replay and cancel, a connector's
  health and the deliveries its toggle holds and resumes, idempotency keys;
- ``tenancy``: meta, organizations, gateways, connectors, triggers, console users and sessions,
  the audit log, limits per organization, secrets re-encryption, the console's connector health;
- ``thermostat``: plants and modules, plant subscriptions, subscription keys;
- ``oauth``: OAuth2 clients, authorization codes, tokens;
- ``retention``: the purge of old messages, deliveries, attempts and idempotency keys;
- ``_common``: ``driver_sql``, a statement compiled once per dialect for executemany.

The repository (``storage/repository/``) has one method per statement. Statements built from
filters are functions; fixed ones are constants, compiled once and cached.
"""

from hookstream.storage.queries._common import (
    DriverSql as DriverSql,
)
from hookstream.storage.queries._common import (
    driver_sql as driver_sql,
)
from hookstream.storage.queries.oauth import (
    delete_expired_oauth_codes as delete_expired_oauth_codes,
)
from hookstream.storage.queries.oauth import (
    delete_oauth_client as delete_oauth_client,
)
from hookstream.storage.queries.oauth import (
    insert_oauth_client as insert_oauth_client,
)
from hookstream.storage.queries.oauth import (
    insert_oauth_code as insert_oauth_code,
)
from hookstream.storage.queries.oauth import (
    insert_oauth_token as insert_oauth_token,
)
from hookstream.storage.queries.oauth import (
    list_oauth_clients as list_oauth_clients,
)
from hookstream.storage.queries.oauth import (
    oauth_client_by_id as oauth_client_by_id,
)
from hookstream.storage.queries.oauth import (
    oauth_code_by_hash as oauth_code_by_hash,
)
from hookstream.storage.queries.oauth import (
    oauth_token_by_access_hash as oauth_token_by_access_hash,
)
from hookstream.storage.queries.oauth import (
    oauth_token_by_refresh_hash as oauth_token_by_refresh_hash,
)
from hookstream.storage.queries.oauth import (
    purge_expired_oauth_tokens as purge_expired_oauth_tokens,
)
from hookstream.storage.queries.oauth import (
    revoke_client_tokens as revoke_client_tokens,
)
from hookstream.storage.queries.oauth import (
    revoke_token_family as revoke_token_family,
)
from hookstream.storage.queries.oauth import (
    use_oauth_code as use_oauth_code,
)
from hookstream.storage.queries.oauth import (
    use_refresh_token as use_refresh_token,
)
from hookstream.storage.queries.pipeline import (
    add_attempt_counts as add_attempt_counts,
)
from hookstream.storage.queries.pipeline import (
    assign_batch as assign_batch,
)
from hookstream.storage.queries.pipeline import (
    assign_batch_deliveries as assign_batch_deliveries,
)
from hookstream.storage.queries.pipeline import (
    batch_members as batch_members,
)
from hookstream.storage.queries.pipeline import (
    cancel_delivery as cancel_delivery,
)
from hookstream.storage.queries.pipeline import (
    cancel_open_deliveries as cancel_open_deliveries,
)
from hookstream.storage.queries.pipeline import (
    cancel_queued as cancel_queued,
)
from hookstream.storage.queries.pipeline import (
    cancel_queued_delivery as cancel_queued_delivery,
)
from hookstream.storage.queries.pipeline import (
    claim_ids as claim_ids,
)
from hookstream.storage.queries.pipeline import (
    connector_failed as connector_failed,
)
from hookstream.storage.queries.pipeline import (
    connector_succeeded as connector_succeeded,
)
from hookstream.storage.queries.pipeline import (
    count_replayable as count_replayable,
)
from hookstream.storage.queries.pipeline import (
    deactivate_connector as deactivate_connector,
)
from hookstream.storage.queries.pipeline import (
    defer_deliveries as defer_deliveries,
)
from hookstream.storage.queries.pipeline import (
    delete_expired_idempotency_key as delete_expired_idempotency_key,
)
from hookstream.storage.queries.pipeline import (
    deliveries_of_messages as deliveries_of_messages,
)
from hookstream.storage.queries.pipeline import (
    due_batches as due_batches,
)
from hookstream.storage.queries.pipeline import (
    due_connectors as due_connectors,
)
from hookstream.storage.queries.pipeline import (
    due_ids as due_ids,
)
from hookstream.storage.queries.pipeline import (
    failing_since_before as failing_since_before,
)
from hookstream.storage.queries.pipeline import (
    finish_delivered as finish_delivered,
)
from hookstream.storage.queries.pipeline import (
    finish_queued as finish_queued,
)
from hookstream.storage.queries.pipeline import (
    get_delivery as get_delivery,
)
from hookstream.storage.queries.pipeline import (
    get_idempotency_key as get_idempotency_key,
)
from hookstream.storage.queries.pipeline import (
    get_message as get_message,
)
from hookstream.storage.queries.pipeline import (
    get_organization as get_organization,
)
from hookstream.storage.queries.pipeline import (
    hold_deliveries as hold_deliveries,
)
from hookstream.storage.queries.pipeline import (
    hold_queued as hold_queued,
)
from hookstream.storage.queries.pipeline import (
    insert_attempts as insert_attempts,
)
from hookstream.storage.queries.pipeline import (
    insert_deliveries as insert_deliveries,
)
from hookstream.storage.queries.pipeline import (
    insert_idempotency_key as insert_idempotency_key,
)
from hookstream.storage.queries.pipeline import (
    insert_messages as insert_messages,
)
from hookstream.storage.queries.pipeline import (
    insert_queued as insert_queued,
)
from hookstream.storage.queries.pipeline import (
    list_attempts as list_attempts,
)
from hookstream.storage.queries.pipeline import (
    list_deliveries as list_deliveries,
)
from hookstream.storage.queries.pipeline import (
    list_messages as list_messages,
)
from hookstream.storage.queries.pipeline import (
    message_bodies as message_bodies,
)
from hookstream.storage.queries.pipeline import (
    next_due_at as next_due_at,
)
from hookstream.storage.queries.pipeline import (
    queue_depth as queue_depth,
)
from hookstream.storage.queries.pipeline import (
    record_delivered as record_delivered,
)
from hookstream.storage.queries.pipeline import (
    record_not_delivered as record_not_delivered,
)
from hookstream.storage.queries.pipeline import (
    release_delivery as release_delivery,
)
from hookstream.storage.queries.pipeline import (
    release_queued as release_queued,
)
from hookstream.storage.queries.pipeline import (
    replayable_batch as replayable_batch,
)
from hookstream.storage.queries.pipeline import (
    requeue as requeue,
)
from hookstream.storage.queries.pipeline import (
    resume_deliveries as resume_deliveries,
)
from hookstream.storage.queries.pipeline import (
    resume_queued as resume_queued,
)
from hookstream.storage.queries.pipeline import (
    spend_rate_tokens as spend_rate_tokens,
)
from hookstream.storage.queries.pipeline import (
    unbatched_due as unbatched_due,
)
from hookstream.storage.queries.retention import (
    purge_attempt_counts as purge_attempt_counts,
)
from hookstream.storage.queries.retention import (
    purge_attempts as purge_attempts,
)
from hookstream.storage.queries.retention import (
    purge_deliveries as purge_deliveries,
)
from hookstream.storage.queries.retention import (
    purge_idempotency_keys as purge_idempotency_keys,
)
from hookstream.storage.queries.retention import (
    purge_messages as purge_messages,
)
from hookstream.storage.queries.tenancy import (
    ENCRYPTED_COLUMNS as ENCRYPTED_COLUMNS,
)
from hookstream.storage.queries.tenancy import (
    alert_targets as alert_targets,
)
from hookstream.storage.queries.tenancy import (
    connector_attempt_counts as connector_attempt_counts,
)
from hookstream.storage.queries.tenancy import (
    connector_attempt_histogram as connector_attempt_histogram,
)
from hookstream.storage.queries.tenancy import (
    connector_credentials as connector_credentials,
)
from hookstream.storage.queries.tenancy import (
    connector_for_sending as connector_for_sending,
)
from hookstream.storage.queries.tenancy import (
    connector_last_failure as connector_last_failure,
)
from hookstream.storage.queries.tenancy import (
    connector_secret as connector_secret,
)
from hookstream.storage.queries.tenancy import (
    console_session_by_hash as console_session_by_hash,
)
from hookstream.storage.queries.tenancy import (
    count_connectors as count_connectors,
)
from hookstream.storage.queries.tenancy import (
    count_triggers as count_triggers,
)
from hookstream.storage.queries.tenancy import (
    delete_connector as delete_connector,
)
from hookstream.storage.queries.tenancy import (
    delete_console_session as delete_console_session,
)
from hookstream.storage.queries.tenancy import (
    delete_expired_console_sessions as delete_expired_console_sessions,
)
from hookstream.storage.queries.tenancy import (
    delete_gateway as delete_gateway,
)
from hookstream.storage.queries.tenancy import (
    delete_trigger as delete_trigger,
)
from hookstream.storage.queries.tenancy import (
    encrypted_values as encrypted_values,
)
from hookstream.storage.queries.tenancy import (
    existing_gateway_ids as existing_gateway_ids,
)
from hookstream.storage.queries.tenancy import (
    gateway_by_token_hash as gateway_by_token_hash,
)
from hookstream.storage.queries.tenancy import (
    get_alerts_connector as get_alerts_connector,
)
from hookstream.storage.queries.tenancy import (
    get_connector as get_connector,
)
from hookstream.storage.queries.tenancy import (
    get_gateway as get_gateway,
)
from hookstream.storage.queries.tenancy import (
    get_meta as get_meta,
)
from hookstream.storage.queries.tenancy import (
    get_user as get_user,
)
from hookstream.storage.queries.tenancy import (
    insert_audit_event as insert_audit_event,
)
from hookstream.storage.queries.tenancy import (
    insert_connector as insert_connector,
)
from hookstream.storage.queries.tenancy import (
    insert_console_session as insert_console_session,
)
from hookstream.storage.queries.tenancy import (
    insert_gateway as insert_gateway,
)
from hookstream.storage.queries.tenancy import (
    insert_meta as insert_meta,
)
from hookstream.storage.queries.tenancy import (
    insert_organization as insert_organization,
)
from hookstream.storage.queries.tenancy import (
    insert_trigger as insert_trigger,
)
from hookstream.storage.queries.tenancy import (
    insert_trigger_gateways as insert_trigger_gateways,
)
from hookstream.storage.queries.tenancy import (
    insert_user as insert_user,
)
from hookstream.storage.queries.tenancy import (
    known_gateways as known_gateways,
)
from hookstream.storage.queries.tenancy import (
    list_audit_events as list_audit_events,
)
from hookstream.storage.queries.tenancy import (
    list_connectors as list_connectors,
)
from hookstream.storage.queries.tenancy import (
    list_gateways as list_gateways,
)
from hookstream.storage.queries.tenancy import (
    list_organizations as list_organizations,
)
from hookstream.storage.queries.tenancy import (
    list_triggers as list_triggers,
)
from hookstream.storage.queries.tenancy import (
    organization_by_key_hash as organization_by_key_hash,
)
from hookstream.storage.queries.tenancy import (
    rotate_gateway_token as rotate_gateway_token,
)
from hookstream.storage.queries.tenancy import (
    rotate_organization_key as rotate_organization_key,
)
from hookstream.storage.queries.tenancy import (
    routing_rows as routing_rows,
)
from hookstream.storage.queries.tenancy import (
    seen_digests as seen_digests,
)
from hookstream.storage.queries.tenancy import (
    trigger_gateway_ids as trigger_gateway_ids,
)
from hookstream.storage.queries.tenancy import (
    unlink_gateway_from_triggers as unlink_gateway_from_triggers,
)
from hookstream.storage.queries.tenancy import (
    update_alerts_connector as update_alerts_connector,
)
from hookstream.storage.queries.tenancy import (
    update_connector as update_connector,
)
from hookstream.storage.queries.tenancy import (
    update_encrypted_values as update_encrypted_values,
)
from hookstream.storage.queries.tenancy import (
    update_gateway as update_gateway,
)
from hookstream.storage.queries.tenancy import (
    user_by_email as user_by_email,
)
from hookstream.storage.queries.thermostat import (
    delete_module as delete_module,
)
from hookstream.storage.queries.thermostat import (
    delete_plant as delete_plant,
)
from hookstream.storage.queries.thermostat import (
    delete_plant_modules as delete_plant_modules,
)
from hookstream.storage.queries.thermostat import (
    delete_plant_subscription as delete_plant_subscription,
)
from hookstream.storage.queries.thermostat import (
    delete_subscription_key as delete_subscription_key,
)
from hookstream.storage.queries.thermostat import (
    get_module as get_module,
)
from hookstream.storage.queries.thermostat import (
    get_plant as get_plant,
)
from hookstream.storage.queries.thermostat import (
    get_plant_subscription as get_plant_subscription,
)
from hookstream.storage.queries.thermostat import (
    insert_module as insert_module,
)
from hookstream.storage.queries.thermostat import (
    insert_plant as insert_plant,
)
from hookstream.storage.queries.thermostat import (
    insert_plant_subscription as insert_plant_subscription,
)
from hookstream.storage.queries.thermostat import (
    insert_subscription_key as insert_subscription_key,
)
from hookstream.storage.queries.thermostat import (
    linked_gateway_ids as linked_gateway_ids,
)
from hookstream.storage.queries.thermostat import (
    list_modules as list_modules,
)
from hookstream.storage.queries.thermostat import (
    list_plants as list_plants,
)
from hookstream.storage.queries.thermostat import (
    list_subscription_keys as list_subscription_keys,
)
from hookstream.storage.queries.thermostat import (
    reported_modules as reported_modules,
)
from hookstream.storage.queries.thermostat import (
    rotate_subscription_key as rotate_subscription_key,
)
from hookstream.storage.queries.thermostat import (
    subscription_key_by_hash as subscription_key_by_hash,
)
from hookstream.storage.queries.thermostat import (
    subscriptions_of_client as subscriptions_of_client,
)
from hookstream.storage.queries.thermostat import (
    subscriptions_of_plant as subscriptions_of_plant,
)
from hookstream.storage.queries.thermostat import (
    subscriptions_to_end as subscriptions_to_end,
)
from hookstream.storage.queries.thermostat import (
    update_module as update_module,
)
from hookstream.storage.queries.thermostat import (
    update_plant as update_plant,
)
from hookstream.storage.queries.thermostat import (
    write_module_state as write_module_state,
)
