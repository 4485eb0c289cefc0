"""``router-proxy promote``: the gate between a retrained artifact and live traffic.

    router-proxy promote --candidate artifacts/live --serving artifacts/serving \\
        --data heldout.jsonl --budget-per-1k 2.5 --margin 0.01 \\
        [--policy policy.yaml --decision default --canary 0.1 --write]

Both artifacts are evaluated on the same held-out rows (by default judged by consensus
among the rows' recorded answers: live traffic has no labels); each one's quality at the
budget is its best curve point costing at most ``--budget-per-1k`` US$ per 1,000
requests. The candidate is promoted only if that beats the serving one's by ``--margin``.
Promoted, with ``--policy`` and ``--decision``, it prints the YAML edit that sends a
``--canary`` share of that decision's traffic to the candidate (``algorithm: split``:
selection/split.py; ``--canary 1`` replaces the serving selector), at the cost weight
that met the budget; ``--write`` writes it (comments kept; checked as ``validate`` checks
a policy first), and the gateway's hot reload picks it up. Nothing is written without
``--write``, and nothing retrains: this only compares what it is given.

Exit status: 0 promoted, 3 held back, 1 an error.
"""

from __future__ import annotations

import argparse
import difflib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_proxy.config.errors import ConfigError
from router_proxy.selection.artifact import ArtifactError, read_meta
from router_proxy.training.aiq import CurvePoint
from router_proxy.training.dataset import DatasetError
from router_proxy.training.extra import require_tqdm

HELD_BACK = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "promote", help="promote a retrained artifact only if it beats the serving one"
    )
    p.add_argument("--candidate", required=True, metavar="DIR", help="the retrained artifact")
    p.add_argument("--serving", required=True, metavar="DIR", help="the artifact serving now")
    p.add_argument("--data", required=True, metavar="JSONL", help="held-out wide rows")
    p.add_argument("--budget-per-1k", type=float, required=True, metavar="USD")
    p.add_argument(
        "--margin", type=float, required=True, help="quality points the candidate must gain"
    )
    p.add_argument("--judge", choices=("consensus", "labels"), default="consensus")
    p.add_argument("--labels", action="append", default=[], metavar="JSONL")
    p.add_argument("--policy", metavar="YAML", help="the policy to edit")
    p.add_argument("--decision", metavar="NAME", help="the decision whose route to edit")
    p.add_argument("--canary", type=float, default=0.1, help="share for the candidate (0..1]")
    p.add_argument("--write", action="store_true", help="write the edit to --policy")
    p.add_argument("--embeddings-model", metavar="DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_promote)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    why: str
    serving: CurvePoint | None
    candidate: CurvePoint | None


def at_budget(points: list[CurvePoint], budget_per_1k: float) -> CurvePoint | None:
    """The best point costing at most the budget (the cheaper of equals); None if none."""
    within = [p for p in points if p.cost_per_1k <= budget_per_1k + 1e-12]
    return max(within, key=lambda p: (p.quality, -p.cost_per_1k), default=None)


def judge(
    serving: list[CurvePoint], candidate: list[CurvePoint], budget: float, margin: float
) -> Verdict:
    s, c = at_budget(serving, budget), at_budget(candidate, budget)
    if c is None:
        return Verdict(False, f"the candidate has no point within ${budget:g} per 1k", s, c)
    base = s.quality if s is not None else 0.0
    gain = c.quality - base
    seen = (
        f"serving {s.quality:.4f} at ${s.cost_per_1k:.3f}/1k"
        if s is not None
        else "serving has no point within the budget (counted as 0)"
    )
    told = f"candidate {c.quality:.4f} at ${c.cost_per_1k:.3f}/1k"
    if gain >= margin:
        return Verdict(True, f"{told} vs {seen}: +{gain:.4f} >= margin {margin:g}", s, c)
    return Verdict(False, f"{told} vs {seen}: {gain:+.4f} < margin {margin:g}", s, c)


def canary_route(
    route: dict[str, Any], candidate: str, cost_weight: float, share: float
) -> dict[str, Any]:
    """The decision's ``route`` with ``share`` of its requests on the candidate artifact."""
    algorithm = str(read_meta(candidate)["algorithm"])
    arm = {"algorithm": algorithm, "params": {"artifact": candidate, "cost_weight": cost_weight}}
    if share >= 1.0:
        return {"candidates": list(route["candidates"]), **arm}
    if route.get("algorithm") == "split":  # a canary already: its heaviest arm is serving
        arms = route.get("params", {}).get("arms", [])
        serving = max(arms, key=lambda a: a.get("weight", 0))
        serving = {"algorithm": serving["algorithm"], "params": dict(serving.get("params", {}))}
    else:
        serving = {
            "algorithm": route.get("algorithm", "static"),
            "params": dict(route.get("params", {})),
        }
    arms = [
        {"weight": round(1.0 - share, 6), **serving},
        {"weight": round(share, 6), **arm},
    ]
    return {"candidates": list(route["candidates"]), "algorithm": "split", "params": {"arms": arms}}


def edit_policy(text: str, decision: str, route: dict[str, Any]) -> str:
    """The policy text with ``decision``'s route replaced (comments elsewhere kept)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(text)
    found = [d for d in data.get("decisions", []) if d.get("name") == decision]
    if not found:
        raise ValueError(f"the policy has no decision '{decision}'")
    found[0]["route"] = route
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _route_of(text: str, decision: str) -> dict[str, Any]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(text)
    for d in data.get("decisions", []):
        if d.get("name") == decision:
            return dict(d["route"])
    raise ValueError(f"the policy has no decision '{decision}'")


def _write_checked(path: Path, text: str) -> None:
    """Validate the new policy as ``validate`` does, then replace the file atomically
    (the reload never reads half a file)."""
    from router_proxy.config.load import check_config
    from router_proxy.pipeline import Pipeline

    staged = path.with_name(f".{path.name}.promote")
    staged.write_text(text)
    try:
        config, _ = check_config(staged)
        Pipeline.build(config)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def _promote(args: argparse.Namespace) -> int:
    require_tqdm("router-proxy promote")
    from router_proxy.training.evaluate import evaluate

    if not 0 < args.canary <= 1:
        print("promote: --canary must be in (0, 1]", file=sys.stderr)
        return 1
    if (args.policy is None) != (args.decision is None) or (args.write and not args.policy):
        print(
            "promote: --policy and --decision go together (and --write needs them)", file=sys.stderr
        )
        return 1
    try:
        result = evaluate(
            [args.serving, args.candidate],
            args.data,
            embeddings_model=args.embeddings_model,
            progress=not args.quiet,
            judge=args.judge,
            labels=args.labels,
        )
        serving, candidate = result.routers
        verdict = judge(serving.points, candidate.points, args.budget_per_1k, args.margin)
        print(f"judge: {args.judge} on {result.rows} held-out rows", end="")
        if result.judge_agreement is not None:
            print(f" (agrees with true labels on {result.judge_agreement:.4f})", end="")
        print()
        print(f"{'PROMOTE' if verdict.promote else 'HOLD BACK'}: {verdict.why}")
        if not verdict.promote or args.policy is None:
            return 0 if verdict.promote else HELD_BACK
        assert verdict.candidate is not None
        path = Path(args.policy)
        text = path.read_text()
        route = canary_route(
            _route_of(text, args.decision),
            args.candidate,
            verdict.candidate.cost_weight,
            args.canary,
        )
        edited = edit_policy(text, args.decision, route)
        diff = difflib.unified_diff(
            text.splitlines(keepends=True), edited.splitlines(keepends=True), str(path), str(path)
        )
        sys.stdout.writelines(diff)
        if args.write:
            _write_checked(path, edited)
            share = f"{args.canary:.0%} of" if args.canary < 1 else "all of"
            print(f"wrote {path}: {share} decision '{args.decision}' on the candidate")
        else:
            print("(not written: add --write; the hot reload picks the file up)")
    except (ArtifactError, DatasetError, ConfigError, ValueError, OSError, RuntimeError) as exc:
        print(f"promote: {exc}", file=sys.stderr)
        return 1
    return 0
