"""`search-templates export`: write the best prompt of a search as JSON (optionally with a fine-tuned model)."""
from __future__ import annotations

import json


def build_export_parser(sub) -> None:
    parser = sub.add_parser("export", help="write the best prompt of a search as JSON (optionally with a fine-tuned model)")
    parser.add_argument("--out", required=True, help="the search's output folder")
    parser.add_argument("--output", help="JSON file to write (default OUT/best.json)")
    parser.add_argument("--fine-tune", action="store_true",
                        help="fine-tune the backbone with the best prompt on the first seed's split and save it beside the JSON")
    parser.add_argument("--candidate", help="export this leaderboard candidate instead of the best: 'ensemble' (the best "
                        "ensemble) or an id prefix as `leaderboard` prints it (default output OUT/<candidate>.json)")
    parser.set_defaults(func=run_export)


def run_export(args) -> int:
    from ..models import quiet_transformers
    from ..export import export_best

    quiet_transformers()
    document = export_best(args.out, fine_tune=args.fine_tune, output=args.output, candidate=args.candidate)
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0
