"""``router-proxy``: serve | validate | explain | schema | train | eval | calibrate | generate |
replay | promote."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from router_proxy.config.errors import ConfigError
from router_proxy.training.extra import MissingExtra

if TYPE_CHECKING:
    from router_proxy.config.schema import Config
    from router_proxy.context import RequestContext


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, MissingExtra) as exc:
        print(exc, file=sys.stderr)
        return 1
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router-proxy", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="policy YAML")
    serve.add_argument("--host", help="overrides server.host")
    serve.add_argument("--port", type=_port, help="overrides server.port (1..65535)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes (metrics are summed over them); default 1",
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)

    validate = commands.add_parser("validate", help="check a policy; print every error")
    validate.add_argument("file")
    validate.set_defaults(handler=_validate)

    schema = commands.add_parser("schema", help="print the policy's JSON Schema")
    schema.set_defaults(handler=_schema)

    explain = commands.add_parser("explain", help="show how a prompt would be routed")
    explain.add_argument("--config", required=True)
    explain.add_argument("--json", action="store_true", help="one JSON object")
    explain.add_argument("--model", help="the request's `model` (default auto, or the body's)")
    explain.add_argument(
        "--body",
        metavar="FILE",
        help="a whole request body as JSON instead of a prompt (- reads stdin): a chat "
        "request (`messages`) or a Responses API one (`input`), as POST /v1/route takes",
    )
    explain.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a request header, e.g. x-router-excluded-models:gpt-4o (repeatable)",
    )
    explain.add_argument("prompt", nargs="?")
    explain.set_defaults(handler=_explain)

    from router_proxy.training.commands import register as register_training

    register_training(commands)
    from router_proxy.training.calibrate import register as register_calibrate

    register_calibrate(commands)
    from router_proxy.training.generate.command import register as register_generate

    register_generate(commands)
    from router_proxy.training.replay import register as register_replay

    register_replay(commands)
    from router_proxy.training.promote import register as register_promote

    register_promote(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from router_proxy.config.load import load_config
    from router_proxy.server.serve import ServeOptions, serve

    config, _ = load_config(args.config)  # fail fast, before any worker starts
    options = ServeOptions(Path(args.config), args.host, args.port, args.workers, args.log_level)
    return serve(config, options)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _port(text: str) -> int:
    # Checked here as server.port is in the YAML: out of range, the socket layer would
    # wrap it (83536 -> 18000) while the log still names the number given.
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1..65535, not {value}")
    return value


def _checked_config(path: str, command: str) -> Config:
    """The policy for a command that never calls a model: unset ``${VAR}``s are noted on
    stderr (by name and place, never a value) instead of refused; ``serve`` refuses them."""
    from router_proxy.config.load import check_config

    config, unset = check_config(path)
    for name, places in unset.items():
        print(
            f"note: ${{{name}}} is not set (not needed to {command}; serve needs it): "
            + ", ".join(places),
            file=sys.stderr,
        )
    return config


def _validate(args: argparse.Namespace) -> int:
    from router_proxy.pipeline import Pipeline

    config = _checked_config(args.file, "validate")
    Pipeline.build(config)
    print(
        f"{args.file}: OK ({len(config.providers)} providers, {len(config.models)} models, "
        f"{len(config.signals)} signals, {len(config.decisions)} decisions)"
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    from router_proxy.config.schema import Config

    print(json.dumps(Config.model_json_schema(), indent=2))
    return 0


def _body_context(path: str, config: Config) -> RequestContext:
    """The request context for a body file (chat, Responses or Messages), read as
    ``POST /v1/route`` reads it."""
    from router_proxy.context import RequestContext
    from router_proxy.errors import InvalidRequestError
    from router_proxy.server.surfaces.detect import AnyBodySurface

    try:
        raw = json.loads(sys.stdin.read() if path == "-" else Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"{path}: cannot read a JSON body: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"{path}: the body must be a JSON object")
    chat, body = AnyBodySurface().parse(raw, config.server)
    return RequestContext(chat, body, "explain")


def _explain(args: argparse.Namespace) -> int:
    from router_proxy.context import RequestContext
    from router_proxy.engine import context_fit
    from router_proxy.engine.auth import ANONYMOUS
    from router_proxy.engine.context_fit import ContextFit
    from router_proxy.engine.preferences import PreferencePolicies
    from router_proxy.errors import GatewayError
    from router_proxy.pipeline import Pipeline

    if (args.prompt is None) == (args.body is None):
        print("explain: give a prompt or --body FILE (one of them)", file=sys.stderr)
        return 2
    config = _checked_config(args.config, "explain")
    pipeline = Pipeline.build(config)
    try:
        if args.body is not None:
            ctx = _body_context(args.body, config)
        else:
            ctx = RequestContext.from_prompt(args.prompt)  # model auto
        if args.model is not None:
            ctx.request.model = ctx.raw_body["model"] = args.model
        ctx.headers = _headers(args.header)
        policies = PreferencePolicies(config.preferences, config.models)
        ctx.preferences = policies.read(ctx, ANONYMOUS)
        plan = policies.apply(asyncio.run(pipeline.route(ctx)), ctx)
        # Every provider serves chat; the caller's preferences were applied to the plan.
        windows = context_fit.dry_run(
            ContextFit(config.models, config.decisions),
            plan.decision,
            plan.candidates,
            ctx,
            lambda model: True,
        )
    except GatewayError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    if args.json:
        shown = plan.to_dict() | ({"context": windows} if windows is not None else {})
        print(json.dumps(shown, indent=2))
        return 0
    print(f"decision:   {plan.decision}  (via {plan.via})")
    print(f"because:    {plan.explanation}")
    for name, why in plan.rejected().items():
        print(f"not {name}: {why}")
    print(f"model:      {plan.model}")
    print(f"candidates: {', '.join(plan.candidates)}")
    if plan.calls is not None:
        print(f"calls:      {json.dumps(plan.to_dict()['calls'])}")
    for name, result in plan.signals.items():
        mark = "fired" if result.fired else "quiet"
        print(f"signal {name}: {mark} ({result.detail})")
    if plan.preferences is not None:
        print(f"preferences: {json.dumps(plan.preferences)}")
    if windows is not None:
        print(f"context:    {json.dumps(windows)}")
    print(f"routing:    {plan.routing_seconds * 1000:.3f} ms")
    return 0


def _headers(pairs: list[str]) -> dict[str, str]:
    """``NAME:VALUE`` pairs as the server reads headers (names lower-cased)."""
    headers = {}
    for pair in pairs:
        name, _, value = pair.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers
