"""The OpenAPI 3.1 description of the REST API, served at /openapi.json and browsed at /docs."""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.api.current_calls import ACTIONS
from bridge.api.subscriptions import EVENT_TYPES, METHODS


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


EXT = {
    "name": "extension_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
    "description": "Numeric id of a configured extension",
}
SUB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
COMMON = {
    "401": _err("No or unknown bearer token"),
    "403": _err("The token does not cover this extension"),
    "404": _err("Unknown extension or subscription"),
    "429": _err(
        "Too many requests (status rate_limit_exceeded); X-RateLimit-Reset says in how many seconds "
        "the window is whole again, Retry-After when the next request is allowed"
    ),
}
BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventIn"}}},
}
ONE = {
    "200": {
        "description": "The subscription",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}},
    }
}
CREATED = {"201": {**ONE["200"], "description": "The subscription, created"}}
CALLBACK_ANSWER = "#/components/schemas/CallbackAnswer"
GONE = {"204": {"description": "Done; no body (Telphin's answer to a DELETE)"}}
#: the bridge's own optional subscription fields (besides secret)
OPTIONS: dict[str, Any] = {
    "ordering": {
        "type": "string",
        "enum": ["strict", "parallel"],
        "description": "The bridge's own. strict (default): one request at a time, oldest first (a slow "
        "or failing receiver delays everything after: head-of-line blocking); parallel: up to "
        "max_in_flight at once, in any order. Left out of a PUT: kept",
    },
    "max_in_flight": {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "description": "The bridge's own: requests in flight at once with ordering parallel (default 10); "
        "only 1 with strict",
    },
    "rate_limit": {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "maximum": 1000000,
        "description": "The bridge's own: requests per second at most (they wait, never fail); null: none",
    },
}
SECRET = {
    "200": {
        "description": "The secret",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Secret"}}},
    }
}
BAD = {
    "400": _err("Invalid field (named in `field`) or malformed JSON"),
    "413": _err("Body too large"),
    "415": _err("Not application/json"),
}


def openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ami-bridge: extension number events",
            "version": __version__,
            "description": "Subscribe URLs to the call events of PBX extensions, and the API around them, "
            "as Telphin's (base URL + credentials are all an integration changes). Every resource is "
            "served both at the path shown and under /api/ver1.0/ (or without it).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "EventIn": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["url", "event_type", "method"],
                    "properties": {
                        "url": {
                            "type": "string",
                            "format": "uri",
                            "maxLength": 2048,
                            "description": "Absolute http(s) URL called when the event occurs",
                        },
                        "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                        "method": {
                            "type": "string",
                            "enum": list(METHODS),
                            "description": "GET: fields in the query string; POST: form body",
                        },
                        **OPTIONS,
                        "secret": {
                            "type": ["string", "null"],
                            "description": "The bridge's own: 'generate' (a new whsec_ secret, answered "
                            "once), a Standard Webhooks secret 'whsec_<base64 of 24-64 bytes>', or null "
                            "(sign with delivery.secret). A different secret replaces the current one, "
                            "which keeps signing for delivery.secret_rotation_overlap seconds. Left out of a "
                            "PUT: kept",
                        },
                    },
                },
                "Event": {
                    "type": "object",
                    "required": ["url", "event_type", "method", "id"],
                    "properties": {
                        "url": {"type": "string"},
                        "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                        "method": {"type": "string", "enum": list(METHODS)},
                        "id": {"type": "integer"},
                        **OPTIONS,
                        "secret": {
                            "type": "string",
                            "description": "Only in the answer to the POST or PUT that set or generated it",
                        },
                    },
                },
                "Secret": {
                    "type": "object",
                    "required": ["secret", "previous_valid_until"],
                    "properties": {
                        "secret": {
                            "type": ["string", "null"],
                            "description": "null: signed with delivery.secret",
                        },
                        "previous_valid_until": {
                            "type": ["number", "null"],
                            "description": "Unix seconds until which the replaced secret still signs",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["status", "message", "error"],
                    "properties": {
                        "status": {
                            "type": "string",
                            "description": "Machine-readable, as Telphin's API: access_denied, not_found, "
                            "rate_limit_exceeded, invalid_request, unauthorized, limit_exceeded...",
                        },
                        "message": {"type": "string", "description": "What is wrong (401: 'Unauthorized')"},
                        "error": {"type": "string", "description": "The bridge's own code (for old clients)"},
                        "field": {"type": "string", "description": "The request field at fault"},
                        "detail": {"type": "string", "description": "Why a 401 was answered"},
                    },
                },
                "CallbackAnswer": {
                    "type": "object",
                    "required": ["call_id", "call_api_id"],
                    "properties": {
                        "call_id": {"type": "string", "description": "CallID (and CallBackID) of its events"},
                        "call_api_id": {"type": "string", "description": "Owner's CallAPIID: cb-<call_id>"},
                        "callback_id": {"type": "string"},
                        "extension_id": {"type": "integer"},
                    },
                },
                "Limits": {"type": "object", "properties": {"event_subscriptions": {"type": "object"}}},
                "Delivery": {"type": "object"},
                **TELPHIN_SCHEMAS,
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/extension/{extension_id}/event/": {
                "parameters": [EXT],
                "post": {
                    "summary": "Add an extension event subscription",
                    "requestBody": BODY,
                    "responses": {**CREATED, **BAD, **COMMON, "409": _err("A subscription limit is reached")},
                },
                "get": {
                    "summary": "List the extension's subscriptions",
                    "responses": {
                        "200": {
                            "description": "Subscriptions",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    }
                                }
                            },
                        },
                        **COMMON,
                    },
                },
                "delete": {
                    "summary": "Remove all of the extension's subscriptions",
                    "responses": {**GONE, **COMMON},
                },
            },
            "/extension/{extension_id}/event/{id}": {
                "parameters": [EXT, SUB_ID],
                "get": {"summary": "Get one subscription", "responses": {**ONE, **COMMON}},
                "put": {
                    "summary": "Replace one subscription",
                    "requestBody": BODY,
                    "responses": {**ONE, **BAD, **COMMON},
                },
                "delete": {"summary": "Remove one subscription", "responses": {**GONE, **COMMON}},
            },
            "/extension/{extension_id}/event/{id}/secret": {
                "parameters": [EXT, SUB_ID],
                "get": {
                    "summary": "The subscription's own signing secret (the bridge's own)",
                    "responses": {**SECRET, **COMMON},
                },
            },
            "/extension/{extension_id}/event/{id}/secret/rotate": {
                "parameters": [EXT, SUB_ID],
                "post": {
                    "summary": "Replace the subscription's signing secret; the old one keeps signing for "
                    "delivery.secret_rotation_overlap seconds (the bridge's own)",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "secret": {
                                            "type": "string",
                                            "description": "'generate' (the default) or 'whsec_<base64>'",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"201": {**SECRET["200"], "description": "The new secret"}, **BAD, **COMMON},
                },
            },
            "/limit/": {
                "get": {
                    "summary": "Subscription limits and usage",
                    "responses": {
                        "200": {
                            "description": "Limits",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Limits"}}
                            },
                        },
                        "401": COMMON["401"],
                    },
                },
            },
            "/extension/{extension_id}/callback/": {
                "parameters": [EXT],
                "post": {
                    "summary": "Start a call: ring src_num[0] first, then dial dst_num",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["src_num", "dst_num"],
                                    "properties": {
                                        "src_num": {"type": "array", "items": {"type": "string"}},
                                        "dst_num": {"type": "string"},
                                        "caller_id_name": {"type": "string"},
                                        "caller_id_number": {"type": "string"},
                                        "wait_for_pickup": {"type": "integer", "minimum": 1, "maximum": 300},
                                        "tag": {"type": "string", "maxLength": 100},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "The call started",
                            "content": {"application/json": {"schema": {"$ref": CALLBACK_ANSWER}}},
                        },
                        **BAD,
                        **COMMON,
                        "502": _err("Asterisk refused the Originate"),
                        "503": _err("AMI not connected"),
                    },
                },
            },
            "/calls/{call_api_id}": {
                "parameters": [
                    {"name": "call_api_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "delete": {
                    "summary": "Hang up the channel a CallAPIID names",
                    "responses": {**GONE, **COMMON, "502": _err("Asterisk refused")},
                },
            },
            "/calls/{call_api_id}/transfer": {
                "parameters": [
                    {"name": "call_api_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "post": {
                    "summary": "Blind-transfer the party connected to that channel to {to}",
                    "responses": {
                        "201": {"description": "Done"},
                        **BAD,
                        **COMMON,
                        "502": _err("Asterisk refused"),
                    },
                },
            },
            "/deliveries/": {
                "get": {
                    "summary": "Deliveries by state (failed by default); tokens without an extensions list",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["failed", "pending", "delivered"]},
                        }
                    ],
                    "responses": {"200": {"description": "Deliveries"}, "400": BAD["400"], **COMMON},
                },
            },
            "/deliveries/retry": {
                "post": {
                    "summary": "Put failed deliveries back in the queue (all, or {'ids': [...]})",
                    "responses": {"201": {"description": "How many"}, **BAD, **COMMON},
                },
            },
            **retry_paths(),
            **telphin_paths(),
        },
    }


def retry_paths() -> dict[str, Any]:
    """Issue 18: attempts, resend, recover, enable."""
    attempts = _json("Attempts: id, delivery_id, subscription_id, at (unix seconds), time (GMT), status "
                     "(null: no answer), latency_ms, error, response (the answer's first KiB)",
                     {"type": "array", "items": {"type": "object"}})  # fmt: skip
    delivery = {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    sub = [EXT, SUB_ID]
    gmt = {"type": "string", "description": "GMT, YYYY-MM-DD HH:MM:SS"}
    since = {"type": "object", "required": ["since"], "properties": {"since": gmt}}
    return {
        "/deliveries/{delivery_id}/attempts/": {
            "parameters": [delivery],
            "get": {"summary": "Every attempt of one delivery, oldest first",
                    "responses": {"200": attempts, "404": _err("No such delivery (for this token)")}},
        },
        "/deliveries/{delivery_id}/resend": {
            "parameters": [delivery],
            "post": {"summary": "Send a delivered or failed delivery again: a new delivery of the same "
                                "event, with the same idempotency key (webhook-id)",
                     "responses": {"201": _json("The new delivery: id, resent, idempotency_key"),
                                   "404": _err("No such delivery (for this token)"),
                                   "409": _err("Still pending, or its subscription is disabled")}},
        },
        "/extension/{extension_id}/event/{id}/attempts/": {
            "parameters": sub,
            "get": {"summary": "The subscription's attempts, newest first",
                    "parameters": [_query("since", {"type": "string"}, "GMT, YYYY-MM-DD HH:MM:SS (from)"),
                                   _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                                          "100 by default")],
                    "responses": {"200": attempts, "400": _err("Bad since or limit"),
                                  "404": _err("No such subscription")}},
        },
        "/extension/{extension_id}/event/{id}/recover": {
            "parameters": sub,
            "post": {"summary": "Put back in the queue the subscription's failed deliveries of events "
                                "since a time",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": since}}},
                     "responses": {"201": _json("How many: {recovered: n}"), "400": _err("Bad since"),
                                   "404": _err("No such subscription"),
                                   "409": _err("The subscription is disabled: enable it first")}},
        },
        "/extension/{extension_id}/event/{id}/enable": {
            "parameters": sub,
            "post": {"summary": "Enable a subscription disabled by a 410 or by delivery.disable_after "
                                "(its failed deliveries stay failed: recover them)",
                     "responses": {"200": _json("The subscription, enabled"),
                                   "404": _err("No such subscription")}},
        },
    }  # fmt: skip


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}  # fmt: skip


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PREFIX = "/api/ver1.0"
CLIENT = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "@me, or the token's client id (GET /user/)"}  # fmt: skip
RECORD = {"name": "record_uuid", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "A RecID: <extension id>-<32 hex>"}  # fmt: skip
CALL_API_ID = {"name": "call_api_id", "in": "path", "required": True, "schema": {"type": "string"}}
WINDOW = [
    _query("start_datetime", {"type": "string"}, "GMT, YYYY-MM-DD HH:MM:SS (from)"),
    _query("end_datetime", {"type": "string"}, "GMT, YYYY-MM-DD HH:MM:SS (to, included)"),
    _query("order", {"type": "string", "enum": ["asc", "desc"]}, "By time; desc (newest first) by default"),
    _query("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "1 first"),
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000}, "100 by default"),
]
NEEDS_AMI = {"503": _err("The daemon's AMI connection is not there (current calls, call control)")}
FILE = {"description": "The recording (Content-Disposition names it; Range requests work)",
        "content": {"audio/wav": {}, "audio/mpeg": {}, "application/octet-stream": {}}}  # fmt: skip
NOT_READY = {"409": _err("The recording is still being made (record_not_ready)")}

TELPHIN_SCHEMAS: dict[str, Any] = {
    "Token": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "description": "Seconds"},
        },
    },
    "OAuthError": {
        "type": "object",
        "required": ["error", "error_description"],
        "properties": {
            "error": {
                "type": "string",
                "description": "RFC 6749: invalid_request, invalid_client, unsupported_grant_type",
            },
            "error_description": {"type": "string"},
        },
    },
    "User": {
        "type": "object",
        "required": ["client_id"],
        "properties": {
            "client_id": {"type": "string"},
            "login": {"type": "string"},
            "token_type": {"type": "string", "enum": ["static", "oauth"]},
            "extensions": {"type": ["array", "null"], "items": {"type": "integer"}},
            "expires_in": {"type": ["integer", "null"]},
        },
    },
    "Extension": {
        "type": "object",
        "required": ["id", "name", "type"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string", "description": "client*short"},
            "type": {"type": "string", "enum": ["phone", "queue", "ivr"]},
            "status": {"type": "string"},
            "label": {"type": "string"},
            "domain": {"type": ["string", "null"]},
            "client_id": {"type": "string"},
            "full_name": {"type": "string"},
        },
    },
    "Record": {
        "type": "object",
        "required": ["record_uuid", "call_uuid", "extension_id"],
        "properties": {
            "record_uuid": {"type": "string"},
            "call_uuid": {"type": "string"},
            "kind": {"type": "string", "enum": ["call", "voicemail"]},
            "flow": {"type": "string"},
            "init_time_gmt": {"type": ["string", "null"]},
            "start_time_gmt": {"type": ["string", "null"]},
            "hangup_time_gmt": {"type": ["string", "null"]},
            "duration": {"type": "integer"},
            "extension_id": {"type": "integer"},
            "result": {"type": ["string", "null"]},
            "from_username": {"type": ["string", "null"]},
            "to_username": {"type": ["string", "null"]},
            "record_file_size": {"type": ["integer", "null"]},
            "file_name": {"type": ["string", "null"]},
        },
    },
    "StorageUrl": {
        "type": "object",
        "required": ["record_url"],
        "properties": {
            "record_url": {"type": "string", "description": "Signed, expiring; no token needed"},
            "expires_in": {"type": "integer"},
        },
    },
    "CallHistory": {
        "type": "object",
        "required": ["call_uuid", "cdr"],
        "properties": {
            "call_uuid": {"type": "string"},
            "flow": {"type": "string"},
            "init_time_gmt": {"type": "string"},
            "bridged_time_gmt": {"type": ["string", "null"]},
            "hangup_time_gmt": {"type": ["string", "null"]},
            "duration": {"type": "integer", "description": "Seconds"},
            "bridged_duration": {"type": "integer", "description": "Seconds of talk"},
            "result": {"type": "string"},
            "from_username": {"type": ["string", "null"]},
            "to_username": {"type": ["string", "null"]},
            "cdr": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "record_uuid": {"type": ["string", "null"]},
                        "extension_id": {"type": "integer"},
                        "sub_call_id": {"type": "string"},
                    },
                },
            },
        },
    },
    "CurrentCall": {
        "type": "object",
        "required": ["call_api_id", "call_flow", "extension_id"],
        "properties": {
            "call_api_id": {"type": "string"},
            "other_call_api_id": {"type": ["string", "null"]},
            "call_flow": {"type": "string", "enum": ["in", "out"]},
            "called_number": {"type": ["string", "null"]},
            "caller_id_number": {"type": ["string", "null"]},
            "init_time_gmt": {"type": ["string", "null"]},
            "answer_time_gmt": {"type": ["string", "null"]},
            "extension_id": {"type": "integer"},
            "record_uuid": {"type": ["string", "null"]},
            "real_call": {"type": "boolean"},
            "state": {"type": "string", "enum": ["ringing", "answered"]},
        },
    },
}


def telphin_paths() -> dict[str, Any]:
    """OAuth2, who the token is, extensions, recordings, the call history, current calls."""
    records_of = {
        "get": {
            "summary": "The complete recordings",
            "parameters": WINDOW,
            "responses": {
                "200": _json("Recordings", {"type": "array", "items": _ref("Record")}),
                "400": BAD["400"],
                **COMMON,
            },
        }
    }
    storage_url = {
        "get": {
            "summary": "A signed link to the recording's file (no token needed to download it)",
            "responses": {"200": _json("The link", _ref("StorageUrl")), **NOT_READY, **COMMON},
        }
    }
    one_record = {
        "get": {"summary": "The recording's file", "responses": {"200": FILE, **NOT_READY, **COMMON}},
        "delete": {
            "summary": "Forget the recording (its file too, once no other recording names it)",
            "responses": {**GONE, "409": _err("The file cannot be deleted"), **COMMON},
        },
    }
    return {
        "/oauth/token": {
            "post": {
                "summary": "OAuth2 client_credentials: a bearer token for api.clients' id and secret "
                "(form or Basic)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["grant_type"],
                                "properties": {
                                    "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                    "client_id": {"type": "string"},
                                    "client_secret": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("The token", _ref("Token")),
                    "400": _json("Bad request", _ref("OAuthError")),
                    "401": _json("Unknown client or wrong secret", _ref("OAuthError")),
                    "429": COMMON["429"],
                },
            }
        },
        PREFIX + "/user/": {
            "get": {
                "summary": "Who the token is",
                "responses": {"200": _json("The token's client", _ref("User")), **COMMON},
            }
        },
        PREFIX + "/client/{client_id}/extension/": {
            "parameters": [CLIENT],
            "get": {
                "summary": "The extensions the token sees",
                "parameters": [
                    _query("name", {"type": "string"}, "client*short (or the full name)"),
                    _query("type", {"type": "string", "enum": ["phone", "queue", "ivr"]}, "Extension type"),
                    _query("status", {"type": "string"}, "active"),
                    _query("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "1 first"),
                    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000}, "All by default"),
                ],
                "responses": {
                    "200": _json("Extensions", {"type": "array", "items": _ref("Extension")}),
                    "400": BAD["400"],
                    **COMMON,
                },
            },
        },
        PREFIX + "/client/{client_id}/extension/{extension_id}": {
            "parameters": [CLIENT, EXT],
            "get": {
                "summary": "One extension",
                "responses": {"200": _json("The extension", _ref("Extension")), **COMMON},
            },
        },
        PREFIX + "/extension/{extension_id}/": {
            "parameters": [EXT],
            "get": {
                "summary": "One extension",
                "responses": {"200": _json("The extension", _ref("Extension")), **COMMON},
            },
        },
        PREFIX + "/extension/{extension_id}/record/": {"parameters": [EXT], **records_of},
        PREFIX + "/extension/{extension_id}/record/{record_uuid}/storage_url/": {
            "parameters": [EXT, RECORD],
            **storage_url,
        },
        PREFIX + "/extension/{extension_id}/record/{record_uuid}": {
            "parameters": [EXT, RECORD],
            **one_record,
        },
        PREFIX + "/client/{client_id}/record/": {"parameters": [CLIENT], **records_of},
        PREFIX + "/client/{client_id}/record/{record_uuid}/storage_url/": {
            "parameters": [CLIENT, RECORD],
            **storage_url,
        },
        PREFIX + "/client/{client_id}/record/{record_uuid}": {"parameters": [CLIENT, RECORD], **one_record},
        "/records/{record_uuid}/{file_name}": {
            "get": {
                "summary": "A recording by a link from storage_url (no token)",
                "security": [],
                "parameters": [
                    RECORD,
                    {"name": "file_name", "in": "path", "required": True, "schema": {"type": "string"}},
                    _query("expires", {"type": "integer"}, "Unix seconds"),
                    _query("signature", {"type": "string"}, "HMAC of the id and expiry"),
                ],
                "responses": {
                    "200": FILE,
                    "403": _err("Not a link of this bridge, or expired"),
                    "404": _err("No such recording (any more)"),
                    **NOT_READY,
                },
            }
        },
        PREFIX + "/client/{client_id}/call_history/": {
            "parameters": [CLIENT],
            "get": {
                "summary": "Calls that began in a time window, built from the events the bridge sent",
                "parameters": [
                    *WINDOW,
                    _query("count", {"type": "integer", "minimum": 1, "maximum": 1000}, "= per_page"),
                    _query("extension_id", {"type": "integer"}, "Only calls that reached it"),
                ],
                "responses": {
                    "200": _json(
                        "{page, per_page, order, call_history}",
                        {
                            "type": "object",
                            "properties": {"call_history": {"type": "array", "items": _ref("CallHistory")}},
                        },
                    ),
                    "400": BAD["400"],
                    **COMMON,
                },
            },
        },
        PREFIX + "/client/{client_id}/call_history/{call_uuid}": {
            "parameters": [
                CLIENT,
                {
                    "name": "call_uuid",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The events' CallID",
                },
            ],
            "get": {
                "summary": "One call's history (its components in cdr)",
                "responses": {"200": _json("The call", _ref("CallHistory")), **COMMON},
            },
        },
        PREFIX + "/extension/{extension_id}/current_calls/": {
            "parameters": [EXT],
            "get": {
                "summary": "The extension's calls in progress",
                "responses": {
                    "200": _json(
                        "{call_list}",
                        {
                            "type": "object",
                            "properties": {"call_list": {"type": "array", "items": _ref("CurrentCall")}},
                        },
                    ),
                    **COMMON,
                    **NEEDS_AMI,
                },
            },
        },
        PREFIX + "/client/{client_id}/current_calls/": {
            "parameters": [CLIENT],
            "get": {
                "summary": "Every call in progress the token sees",
                "responses": {
                    "200": _json(
                        "{call_list}",
                        {
                            "type": "object",
                            "properties": {"call_list": {"type": "array", "items": _ref("CurrentCall")}},
                        },
                    ),
                    **COMMON,
                    **NEEDS_AMI,
                },
            },
        },
        PREFIX + "/extension/{extension_id}/current_calls/{call_api_id}": {
            "parameters": [EXT, CALL_API_ID],
            "put": {
                "summary": "Act on a call in progress: transfer, attended_transfer, hold, offhold, park, "
                "pickup, eavesdrop, whisper, conference",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["action"],
                                "properties": {
                                    "action": {"type": "string", "enum": list(ACTIONS)},
                                    "send_dst": {
                                        "type": "string",
                                        "description": "A number (transfer, "
                                        "attended_transfer, pickup, eavesdrop, whisper, conference)",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("Done"),
                    **BAD,
                    **COMMON,
                    "409": _err("Not possible in this state (not answered, not on hold...)"),
                    "502": _err("Asterisk refused"),
                    **NEEDS_AMI,
                },
            },
            "delete": {
                "summary": "Hang the extension's channel up",
                "responses": {**GONE, **COMMON, "502": _err("Asterisk refused"), **NEEDS_AMI},
            },
        },
    }
