"""The console: server-rendered pages for an organization's users (sign-in for now).

``sessions`` says who is signed in and checks CSRF tokens and origins; ``pages`` has the
routes and the page rendering the consent page shares.
"""
