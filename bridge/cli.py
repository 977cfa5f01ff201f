"""The ``ami-bridge`` command line: one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import Config


def _cmd_record(args: argparse.Namespace) -> int:
    from bridge.record import RecordError, record

    secret = args.secret if args.secret is not None else os.environ.get("AMI_SECRET")
    if secret is None:
        print("ami-bridge record: no AMI secret: pass --secret or set AMI_SECRET", file=sys.stderr)
        return 2
    try:
        with open(args.output, "wb") as out:
            rec = asyncio.run(
                record(
                    args.host,
                    args.port,
                    args.username,
                    secret,
                    out,
                    duration=args.duration,
                    until_idle=args.until_idle,
                )
            )
    except RecordError as err:
        print(f"ami-bridge record: {err} ({args.host}:{args.port}, user {args.username!r})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ami-bridge record: stopped; stream kept in {args.output}", file=sys.stderr)
        return 0
    print(f"recorded {rec.events} events ({rec.bytes} bytes) to {args.output}", file=sys.stderr)
    return 0


def _load(path: str) -> Config | None:
    from bridge.config import ConfigError, load_config, permission_warning

    try:
        config = load_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return None
    warning = permission_warning(path)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def _cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.config import secret_warnings

    config = _load(args.config)
    if config is None:
        return 1
    for warning in secret_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    kinds = {t: sum(1 for e in config.extensions if e.type == t) for t in ("phone", "queue", "ivr")}
    print(
        f"{args.config}: OK ({kinds['phone']} phones, {kinds['queue']} queues, {kinds['ivr']} IVRs, "
        f"{len(config.trunks)} trunks; AMI {config.ami.username}@{config.ami.host}:{config.ami.port})"
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge.replay import replay_files, to_json_line

    config = _load(args.config)
    if config is None:
        return 1
    paths = [Path(p) for p in args.files]
    for p in paths:
        if not p.is_file():
            print(f"ami-bridge replay: {p}: no such file", file=sys.stderr)
            return 1
    out = sys.stdout
    for item in replay_files(config, paths):
        out.write(to_json_line(item) + "\n")
    out.flush()
    return 0


def _setup_logging(fmt: str, level: str) -> None:
    import logging

    from bridge.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))  # fmt: skip
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The event loop ``run`` uses: uvloop's when installed (``pip install
    'ami-bridge[fast]'``), unless ``AMI_BRIDGE_LOOP=asyncio`` asks for asyncio's own."""
    if os.environ.get("AMI_BRIDGE_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", None


def _cmd_run(args: argparse.Namespace) -> int:
    import logging

    from bridge.daemon import Daemon
    from bridge.store import StoreError

    config = _load(args.config)
    if config is None:
        return 1
    from bridge import logs

    logs.server = config.ami.name  # every line of the run says which Asterisk (issue 19)
    _setup_logging(args.log_format, args.log_level)
    loop_name, loop_factory = _loop_factory()
    logging.getLogger("bridge.cli").info("event loop: %s", loop_name)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(Daemon(config, config_path=args.config).run())
    except StoreError as err:
        print(f"ami-bridge run: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"ami-bridge run: cannot listen on {config.api.listen}: {err.strerror}", file=sys.stderr)
        return 1
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from bridge.doctor import diagnose

    config = _load(args.config)
    if config is None:
        return 1
    print(f"ami-bridge doctor: {config.ami.username}@{config.ami.host}:{config.ami.port}")
    report = asyncio.run(diagnose(config, watch=args.watch))
    print(report.render())
    print("problems found: fix the FAIL lines above" if report.failed else "no problem found")
    return 1 if report.failed else 0


def _cmd_extensions(args: argparse.Namespace) -> int:
    from bridge.discover import DiscoverError, discover, infer, plan, render_json, render_yaml

    config = _load(args.config)
    if config is None:
        return 1
    client, domain, base = infer(config)
    client = args.client if args.client is not None else client
    domain = args.domain if args.domain is not None else domain
    if not client or not domain:
        print(f"ami-bridge extensions: {args.config} has no extension named client*short@domain to take "
              "the client and domain from: pass --client (e.g. 000) and --domain (e.g. pbx.example)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        found = asyncio.run(discover(config))
    except DiscoverError as err:
        print(f"ami-bridge extensions: {err}", file=sys.stderr)
        return 1
    result = plan(config, found, client, domain, args.id_base if args.id_base is not None else base)
    print(render_json(result) if args.format == "json" else render_yaml(result), end="")
    for note in found.notes:
        print(f"ami-bridge extensions: {note}", file=sys.stderr)
    return 0


def _cmd_eventfilter(args: argparse.Namespace) -> int:
    from bridge.ami.filter import eventfilters

    config = _load(args.config)
    if config is None:
        return 1
    print("\n".join(eventfilters(config)))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    _setup_logging("text", "warning")
    try:
        return asyncio.run(run_demo(args.port, args.duration, args.speed))
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        print(f"ami-bridge demo: cannot listen on 127.0.0.1:{args.port}: {err.strerror} (try --port)",
              file=sys.stderr)  # fmt: skip
        return 1


def _cmd_deliveries(args: argparse.Namespace) -> int:
    import json

    from bridge.store import StoreError, open_store

    config = _load(args.config)
    if config is None:
        return 1
    try:
        store = open_store(config.store)
    except StoreError as err:
        print(err, file=sys.stderr)
        return 1
    if args.retry:
        print(f"{store.retry_failed(args.ids or None)} failed deliveries put back in the queue")
    else:
        for row in store.deliveries(args.state):
            print(json.dumps(row, ensure_ascii=False))
    store.close()
    return 0


def _cmd_hash_token(args: argparse.Namespace) -> int:
    from bridge.config import token_digest

    token = args.token if args.token is not None else sys.stdin.readline().strip()
    if len(token) < 16:
        print("ami-bridge hash-token: tokens must have at least 16 characters", file=sys.stderr)
        return 2
    print(token_digest(token).hex())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ami-bridge",
        description="Asterisk AMI events turned into Telphin extension events.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser(
        "record",
        help="record the raw AMI stream of a PBX to a file (for fixtures and bug reports)",
        description=(
            "Log in to AMI and write every byte Asterisk sends after the login response to "
            "OUTPUT, until Ctrl-C, --duration, or --until-idle."
        ),
    )
    rec.add_argument("-o", "--output", required=True, help="file to write (e.g. fixtures/NAME.ami)")
    rec.add_argument("--host", default="127.0.0.1")
    rec.add_argument("--port", type=int, default=5038)
    rec.add_argument("--username", default="bridge")
    rec.add_argument("--secret", help="AMI secret (default: $AMI_SECRET)")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rec.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop once a call was seen and no channel is up and no event came for SECONDS",
    )
    rec.set_defaults(func=_cmd_record)

    rp = sub.add_parser(
        "replay",
        help="translate recorded AMI streams and print the events as JSON lines",
        description=(
            "Feed FILE.ami (several files are one stream, in order) through the translator the "
            "daemon uses; print one JSON object per event: "
            '{"extension_id": N, "event": {...}}. Same input, same output.'
        ),
    )
    rp.add_argument("files", nargs="+", metavar="FILE.ami")
    rp.add_argument("--config", required=True, metavar="CONFIG.yaml")
    rp.set_defaults(func=_cmd_replay)

    run = sub.add_parser("run", help="run the bridge: AMI -> events -> webhooks, and the REST API")
    run.add_argument("--config", required=True, metavar="CONFIG.yaml")
    run.add_argument("--log-format", choices=("json", "text"), default="json")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.set_defaults(func=_cmd_run)

    doc = sub.add_parser(
        "doctor", help="check the Asterisk side: login, permissions, timestampevents, objects"
    )
    doc.add_argument("--config", required=True, metavar="CONFIG.yaml")
    doc.add_argument(
        "--watch",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also watch live traffic this long (place a call) to check channelvars",
    )
    doc.set_defaults(func=_cmd_doctor)

    ext = sub.add_parser(
        "extensions",
        help="ask Asterisk for its phones and queues and print an extensions: block to paste",
        description=(
            "Ask Asterisk (PJSIP endpoints, chan_sip peers, queues, voicemail boxes) with the "
            "config's ami: and print an extensions: block: the config's extensions as they are, "
            "then one entry per phone or queue it lacks (trunks skipped, with the reason). New ids: "
            "ID_BASE + short number when it is a number and free, else the next free id."
        ),
    )
    ext.add_argument("--config", required=True, metavar="CONFIG.yaml")
    ext.add_argument("--client", help="client in new names client*short@domain (default: the config's)")
    ext.add_argument("--domain", help="domain in new names (default: the config's)")
    ext.add_argument("--id-base", type=int, metavar="N",
                     help="new id = N + short number (default: as the config's ids, else 1000)")  # fmt: skip
    ext.add_argument("--format", choices=("yaml", "json"), default="yaml")
    ext.set_defaults(func=_cmd_extensions)

    evf = sub.add_parser(
        "eventfilter",
        help="print manager.conf eventfilter lines so Asterisk sends only what the bridge reads",
    )
    evf.add_argument("--config", required=True, metavar="CONFIG.yaml")
    evf.set_defaults(func=_cmd_eventfilter)

    demo = sub.add_parser(
        "demo", help="run the bridge on built-in recordings of a real Asterisk (no PBX needed)"
    )
    demo.add_argument("--port", type=int, default=8080, help="API/dashboard port on 127.0.0.1 (default 8080)")
    demo.add_argument("--speed", type=float, default=2.0, help="replay this many times faster than recorded")
    demo.add_argument("--duration", type=float, help="play every recording once and stop after SECONDS")
    demo.set_defaults(func=_cmd_demo)

    dl = sub.add_parser("deliveries", help="list deliveries (failed by default) or retry failed ones")
    dl.add_argument("--config", required=True, metavar="CONFIG.yaml")
    dl.add_argument("--state", choices=("failed", "pending", "delivered"), default="failed")
    dl.add_argument("--retry", action="store_true", help="put failed deliveries back in the queue")
    dl.add_argument("ids", nargs="*", type=int, help="only these delivery ids (with --retry)")
    dl.set_defaults(func=_cmd_deliveries)

    ht = sub.add_parser("hash-token", help="print the sha256 of an API token (for api.tokens[].sha256)")
    ht.add_argument("token", nargs="?", help="the token (default: read from standard input)")
    ht.set_defaults(func=_cmd_hash_token)

    cc = sub.add_parser("check-config", help="validate a configuration file")
    cc.add_argument("config", metavar="CONFIG.yaml")
    cc.set_defaults(func=_cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        return int(args.func(args))
    return 1
