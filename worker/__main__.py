"""Entry point: `email-status-worker run | check-config | backfill | simulate`.

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
    return load_config(path, dict(os.environ))


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
    backfill.add_argument("--share", type=float, default=0.25,
                          help="fraction of the account's polling rate to use (default 0.25: the worker polls too)")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    backfill.set_defaults(func=cmd_backfill)

    from worker.simulator import cli as simulator_cli

    simulator_cli.add_parser(sub)
    parser.set_defaults(func=simulator_cli.run)  # the simulate sub-command's handler
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
