"""Creation-time checks of outgoing request targets against the deployment's rules.

Pydantic validators do not see the settings, so route handlers call these. Only what is
known without DNS is judged here (the scheme, an IP-literal host); names are checked by the
resolver on every connection.
"""

from __future__ import annotations

from hookstream.errors import ValidationFailed
from hookstream.pipeline.deliver.addresses import TargetPolicy
from hookstream.services.schemas import Authentication, AuthOAuth2
from hookstream.settings import Settings


def target_policy(settings: Settings) -> TargetPolicy:
    """The deployment's rule for where outgoing requests may go."""
    return TargetPolicy(
        allow_private=settings.allow_private_targets,
        allowed_networks=settings.allowed_target_networks,
        https_only=settings.https_only,
    )


def target_refusal(settings: Settings, url: str) -> str | None:
    """Why ``url`` would be refused at delivery time whatever DNS answers, or None."""
    return target_policy(settings).url_refusal(url)


def check_target(settings: Settings, url: str | None, field: str) -> None:
    """422 naming ``field`` when ``url`` is a target outgoing requests may not reach."""
    if url is None:
        return
    why = target_refusal(settings, url)
    if why is not None:
        raise ValidationFailed(
            f"'{field}': {why}", details=[{"field": field, "message": why}]
        )


def check_auth_target(settings: Settings, auth: Authentication | None) -> None:
    """422 when an OAuth2 token URL is a target outgoing requests may not reach."""
    if isinstance(auth, AuthOAuth2):
        check_target(settings, auth.tokenUrl, "authentication.tokenUrl")
