"""Entry point: `email-status-worker run | check-config | backfill | replay-dead-letters | simulate`.

The environment is read here, once, and passed down as frozen config.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

from worker import __version__
from worker.config import Config, load_config
from worker.errors import ConfigError

EXIT_CONFIG = 2


def _load(path: str) -> Config:
    """The configuration, with its TLS files loaded too (a bad path or PEM is a problem like any
    other, reported by check-config and before anything starts)."""
    from worker.kafka_tls import tls_problems

    return load_config(path, dict(os.environ), checks=lambda config, sound: tls_problems(config.kafka, load=sound))


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    by_provider: dict[str, int] = {}
    for account in config.accounts:
        by_provider[account.provider.value] = by_provider.get(account.provider.value, 0) + 1
    summary = ", ".join(f"{n} {p}" for p, n in sorted(by_provider.items())) or "no accounts"
    print(f"{args.config}: OK ({summary}; topics {config.kafka.topic_prefix}.*; {config.kafka.shards} shards)")
    from worker.placement import ShardMap

    shard_map = ShardMap.from_config(config)
    if shard_map.placements:
        print("account -> shard:")
        print("\n".join(shard_map.lines()))
    # warnings, not problems: the exit status stays 0
    for notice in config.notices:
        print(f"WARNING: {notice}", file=sys.stderr)
    warning = shard_map.crowding()
    if warning:
        print(warning, file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    from worker.app import run_worker

    return run_worker(config)


def cmd_backfill(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    from worker.backfill import run_backfill

    return run_backfill(config, args.account, args.date_from, args.date_to, progress=not args.no_progress,
                        share=args.share)


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    from worker.letters import Selection, parse_time
    from worker.replay import run_replay

    try:
        since, until = (parse_time(t) if t else None for t in (args.time_from, args.time_to))
    except ValueError as exc:
        print(f"replay-dead-letters: --from/--to: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    selection = Selection(frozenset(args.accounts), frozenset(args.reasons), since, until)
    return run_replay(config, selection, name=args.name, dry_run=args.dry_run, progress=not args.no_progress)


def _share(text: str) -> float:
    """`--share`: a fraction of the account's polling rate, above 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:   # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} is not a fraction above 0 and at most 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="email-status-worker",
        description="Email provider webhooks and status polls, normalized into one exactly-once Kafka stream.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the worker (webhooks, polling, shards, health endpoints)")
    run.add_argument("--config", required=True, help="the YAML configuration file")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file and report every problem")
    check.add_argument("--config", required=True, help="the YAML configuration file")
    check.set_defaults(func=cmd_check_config)

    backfill = sub.add_parser("backfill", help="re-poll a date range of one account through the same dedup")
    backfill.add_argument("--config", required=True, help="the YAML configuration file")
    backfill.add_argument("--account", required=True, help="the account's name in the configuration")
    backfill.add_argument("--from", dest="date_from", required=True, type=date.fromisoformat,
                          help="first send date, YYYY-MM-DD, in the provider's time zone")
    backfill.add_argument("--to", dest="date_to", required=True, type=date.fromisoformat,
                          help="last send date, YYYY-MM-DD, inclusive")
    backfill.add_argument("--share", type=_share, default=0.25,
                          help="fraction of the account's polling rate to use (default 0.25: the worker polls too)")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    backfill.set_defaults(func=cmd_backfill)

    replay = sub.add_parser(
        "replay-dead-letters", help="put dead letters back through the normal path and its dedup, exactly once",
        description="Replay <prefix>._dead_letter into <prefix>._raw through the worker's own checks and dedup. "
                    "Exit status: 0 done, 1 Kafka failed (run it again: it resumes), 2 usage or configuration.")
    replay.add_argument("--config", required=True, help="the YAML configuration file")
    replay.add_argument("--account", dest="accounts", action="append", default=[], metavar="NAME",
                        help="only this account's dead letters (repeatable; default: all)")
    replay.add_argument("--reason", dest="reasons", action="append", default=[], metavar="R",
                        help="only dead letters with this reason, an error type (repeatable; default: all)")
    replay.add_argument("--from", dest="time_from", metavar="ISO",
                        help="received at or after this time (ISO 8601; no zone: UTC; a date: its 00:00)")
    replay.add_argument("--to", dest="time_to", metavar="ISO",
                        help="received before this time (exclusive)")
    replay.add_argument("--dry-run", action="store_true", help="only count what would be replayed; write nothing")
    replay.add_argument("--name", help="the replay's consumer group is <kafka.group_id>.replay.<name> (default: "
                                       "a hash of the selection, so the same selection resumes where it stopped)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    replay.set_defaults(func=cmd_replay)

    from worker.simulator import cli as simulator_cli

    simulator_cli.add_parser(sub)
    parser.set_defaults(func=simulator_cli.run)  # the simulate sub-command's handler
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
