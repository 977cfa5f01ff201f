"""The REST API: Telphin-compatible resources over aiohttp.

``app`` (the application, its rate limits and error answers), ``common`` (what every
resource module uses), ``auth`` (static tokens, OAuth2 clients, ``/user/``), one module per
resource family: ``subscriptions`` (extension events), ``control`` (callbacks and call
control), and ``openapi`` (the description served at /openapi.json and /docs).
"""

from bridge.api.app import RateLimiter, make_app
from bridge.api.common import DISPATCHER_KEY, ApiError

__all__ = ["DISPATCHER_KEY", "ApiError", "RateLimiter", "make_app"]
