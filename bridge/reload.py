"""What a reload of the configuration changes: the settings that apply at once, those
that need a restart, and how the configuration is summed up in the log.

Pure: the daemon reads the file and applies the result (:meth:`bridge.daemon.Daemon.reload`).
"""

from __future__ import annotations

from pydantic import BaseModel

from bridge.config import Config

#: settings a running daemon cannot change: the AMI connection (kept open across a
#: reload), the API's socket and request size limit, the store, the HTTP client
RESTART_ONLY = ("ami", "store", "api.listen", "api.max_body_bytes", "api.console", "delivery.client",
                "management.listen", "management.login")  # fmt: skip


def _get(config: Config, path: str) -> object:
    value: object = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _differing(path: str, old: object, new: object) -> list[str]:
    """``path`` if the values differ; for two settings sections, the keys that differ in them."""
    if old == new:
        return []
    if isinstance(old, BaseModel) and isinstance(new, BaseModel) and type(old) is type(new):
        return [f"{path}.{k}" for k in type(old).model_fields if getattr(old, k) != getattr(new, k)]
    return [path]


def restart_needed(old: Config, new: Config) -> list[str]:
    """The key paths of the settings that differ but need a restart to apply (``ami.host``...)."""
    return [key for path in RESTART_ONLY for key in _differing(path, _get(old, path), _get(new, path))]


def effective(old: Config, new: Config) -> Config:
    """``new`` as a running daemon can apply it: the restart-only settings kept as in ``old``."""
    api = new.api.model_copy(update={"listen": old.api.listen, "max_body_bytes": old.api.max_body_bytes,
                                     "console": old.api.console})  # fmt: skip
    delivery = new.delivery.model_copy(update={"client": old.delivery.client})
    management = new.management.model_copy(update={"listen": old.management.listen,
                                                   "login": old.management.login})  # fmt: skip
    return new.model_copy(update={"ami": old.ami, "store": old.store, "api": api, "delivery": delivery,
                                  "management": management})  # fmt: skip


def changed(old: Config, new: Config) -> list[str]:
    """The settings that differ: a section's keys (``api.tokens``), or a whole list (``extensions``)."""
    return [
        key
        for name in Config.model_fields
        for key in _differing(name, getattr(old, name), getattr(new, name))
    ]


def summary(config: Config) -> str:
    """``12 extensions (10 phones, 1 queue, 1 IVR), 2 trunks, 3 API tokens, 1 API client, MQTT off``."""
    kinds = {t: sum(1 for e in config.extensions if e.type == t) for t in ("phone", "queue", "ivr")}
    return (
        f"{len(config.extensions)} extensions ({kinds['phone']} phones, {kinds['queue']} queues, "
        f"{kinds['ivr']} IVRs), {len(config.trunks)} trunks, {len(config.api.tokens)} API tokens, "
        f"{len(config.api.clients)} API clients, MQTT {'on' if config.mqtt is not None else 'off'}"
    )
