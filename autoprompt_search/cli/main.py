"""`search-templates`: the command line.

    search-templates --task sst2 [options]        run the whole search (default command)
    search-templates render --task sst2 ...       show how templates render for a model
    search-templates labels --task sst2 ...       automatic label-word search
    search-templates generate --task sst2 ...     automatic template generation
    search-templates leaderboard --out DIR        print the ranking (and plot it)
    search-templates export --out DIR             write the best prompt as JSON
    search-templates predict --prompt best.json   classify texts with an exported prompt
"""
from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .export import build_export_parser
from .generate import build_generate_parser
from .labels import build_labels_parser
from .leaderboard import build_leaderboard_parser
from .predict import build_predict_parser
from .render import build_render_parser
from .search import build_search_parser


SUBCOMMANDS = {"search": build_search_parser, "render": build_render_parser, "labels": build_labels_parser,
               "generate": build_generate_parser, "leaderboard": build_leaderboard_parser,
               "export": build_export_parser, "predict": build_predict_parser}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="search-templates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for build in SUBCOMMANDS.values():
        build(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["search", *argv]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as error:
        print(f"search-templates: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("search-templates: interrupted; finished evaluations are saved, rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
