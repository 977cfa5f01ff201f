"""The REST API: Telphin-compatible resources over aiohttp.

``app`` (the application, authentication, errors, rate limits), one module per resource
family: ``subscriptions`` (extension events), ``control`` (callbacks and call control),
and ``openapi`` (the description served at /openapi.json and /docs).
"""

from bridge.api.app import DISPATCHER_KEY, ApiError, RateLimiter, make_app

__all__ = ["DISPATCHER_KEY", "ApiError", "RateLimiter", "make_app"]
