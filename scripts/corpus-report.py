#!/usr/bin/env python3
"""Run the current sandbox-service over the service corpus in a throwaway box and report every failure.

    .venv/bin/python scripts/corpus-report.py [--box DIR] [--only UNIT ...] [--jobs N] [--no-bisect]
        [--json FILE] [--markdown FILE] [--from-json FILE]

Boots a box (or uses the running one in DIR: `python -m tests.box up DIR`), runs each corpus unit on
the host and as a sandbox under the `default` and `trusted` profiles (tests/corpus_report.py), and
writes the raw record (JSON) and the classified report (Markdown, tests/corpus_classify.py).  With
--from-json it only classifies an earlier record.  Run as root from the repository root.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.box import SystemdBox
from tests.corpus import CORPUS, REFUSED, by_unit
from tests.corpus_classify import render_markdown
from tests.corpus_report import from_json, gather, to_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", type=Path, help="use the box running in this state directory")
    parser.add_argument("--only", action="append", default=[], metavar="UNIT", help="only these units")
    parser.add_argument("--jobs", type=int, default=2, help="sandboxes tried at once (default 2)")
    parser.add_argument("--no-bisect", action="store_true", help="do not look for the profile directive")
    parser.add_argument("--json", type=Path, default=Path("corpus-report.json"))
    parser.add_argument("--markdown", type=Path, default=Path("corpus-report.md"))
    parser.add_argument("--from-json", type=Path, help="classify this record instead of running")
    args = parser.parse_args()

    if args.from_json:
        records = from_json(args.from_json.read_text())
        wall = None
    else:
        services = [by_unit(u) for u in args.only] if args.only else [*CORPUS, *REFUSED]
        began = time.monotonic()
        if args.box:
            box = SystemdBox.attach(args.box)
            if not box.running:
                print(f"no running box in {args.box}", file=sys.stderr)
                return 1
            records = gather(box, services, jobs=args.jobs, bisect=not args.no_bisect)
        else:
            with SystemdBox() as box:
                records = gather(box, services, jobs=args.jobs, bisect=not args.no_bisect)
        wall = time.monotonic() - began
        args.json.write_text(to_json(records) + "\n")
        print(f"record: {args.json} ({wall:.0f} s)", file=sys.stderr)
    args.markdown.write_text(render_markdown(records, wall_seconds=wall))
    print(f"report: {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
