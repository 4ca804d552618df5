"""`python -m bench._child module:function '{json kwargs}' [--profile]`: one measurement in a fresh
interpreter. Prints the function's JSON result as the last line of stdout; with --profile, the
cProfile top (by own time) goes to stderr."""

from __future__ import annotations

import asyncio
import cProfile
import importlib
import inspect
import json
import logging
import sys
import tempfile


def main() -> None:
    target, args = sys.argv[1], json.loads(sys.argv[2])
    profile = "--profile" in sys.argv[3:]
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the tail's start-up chatter on fresh topics
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(f"bench.{module_name}"), func_name)

    def call():
        result = func(**args)
        return asyncio.run(result) if inspect.iscoroutine(result) else result

    if profile:
        from bench.common import profile_text

        prof = cProfile.Profile()
        result = prof.runcall(call)
        with tempfile.NamedTemporaryFile(suffix=".prof") as f:
            prof.dump_stats(f.name)
            print(f"--- cProfile of {target} (top by own time) ---\n{profile_text(f.name, 25)}", file=sys.stderr)
    else:
        result = call()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
