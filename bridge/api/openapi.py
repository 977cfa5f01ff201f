"""The OpenAPI 3.1 description of the REST API, served at /openapi.json and browsed at /docs."""

from __future__ import annotations

from typing import Any

from bridge import __version__
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
            "description": "Subscribe URLs to the call events of PBX extensions (Telphin-compatible).",
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
        },
    }
