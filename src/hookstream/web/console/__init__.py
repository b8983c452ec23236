"""The console: server-rendered pages for an organization's users.

``sessions`` says who is signed in and checks CSRF tokens and origins; ``pages`` has sign-in,
sign-out and the rendering every page shares (the consent page too); ``web`` what every
signed-in page shares (the page decorator, forms, errors by field, static files); ``overview``,
``connectors``, ``logs`` and ``thermostat`` the pages; ``routes`` gathers them for the app.
"""
