"""The thermostat cloud's OAuth2 authorization server (Authlib doing the protocol).

``server`` holds the Authlib integration (clients, codes, tokens, PKCE, revocation),
``bearer`` checks the access tokens it issued; the routes are in
``hookstream.thermostat.api.oauth2``.
"""

from __future__ import annotations

# The scopes a client may ask for, and how the consent page words them.
SCOPES: dict[str, str] = {
    "comfort.read": "read your thermostats' state",
    "comfort.write": "change your thermostats' settings",
}
# What a request without a scope gets (RFC 6749 3.3 lets the server pick a default).
DEFAULT_SCOPE = "comfort.read"
