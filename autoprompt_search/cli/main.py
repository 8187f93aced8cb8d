"""`search-templates`: the command line.

    search-templates --task sst2 [options]        run the whole search (default command)
    search-templates render --task sst2 ...       show how templates render for a model
    search-templates labels --task sst2 ...       automatic label-word search
    search-templates generate --task sst2 ...     automatic template generation
    search-templates leaderboard --out DIR        print the ranking (and plot it)
    search-templates export --out DIR             write the best prompt as JSON
    search-templates predict --prompt best.json   classify texts with an exported prompt
    search-templates compare --task sst2          prompt-based vs standard fine-tuning, with numbers
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..errors import UserError
from ..textfiles import check_text
from .compare import build_compare_parser
from .export import build_export_parser
from .generate import build_generate_parser
from .labels import build_labels_parser
from .leaderboard import build_leaderboard_parser
from .predict import build_predict_parser
from .render import build_render_parser
from .search import build_search_parser


SUBCOMMANDS = {"search": build_search_parser, "render": build_render_parser, "labels": build_labels_parser,
               "generate": build_generate_parser, "leaderboard": build_leaderboard_parser,
               "export": build_export_parser, "predict": build_predict_parser, "compare": build_compare_parser}
DEBUG_FLAG = "--debug"
LOG_NAME = "search-templates-error.log"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UserError: one line, exit 2, like every other input error."""

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="search-templates", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the full traceback of an unexpected error (accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command")
    for build in SUBCOMMANDS.values():
        build(sub)
    return parser


def _check_arguments(argv: list[str]) -> None:
    """Command-line text that was not UTF-8 (Python keeps such bytes as surrogates): one line naming the flag."""
    flag = None
    for position, token in enumerate(argv, start=1):
        if token.startswith("-"):
            flag = token.split("=", 1)[0]
        check_text(token, f"command-line argument {position}" + (f" ({flag})" if flag else ""))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [token for token in argv if token != DEBUG_FLAG]
    parser = build_parser()
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["search", *argv]
    args = None
    try:
        _check_arguments(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        args.command_line = argv  # as given, for what records the command that made it
        return args.func(args)
    except UserError as error:
        print(f"search-templates: error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("search-templates: interrupted; finished evaluations are saved, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as error:  # the guard: anything unexpected is a bug, reported in one line plus a log
        if debug:
            traceback.print_exc()
            return 1
        log = _write_log(args, error)
        print(f"search-templates: internal error: {_one_line(f'{type(error).__name__}: {error}')} "
              f"({_where(error)}); full traceback in {log}; rerun with {DEBUG_FLAG} to print it", file=sys.stderr)
        return 1


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "no traceback"
    frame = frames[-1]
    return f"in {frame.name} at {Path(frame.filename).name}:{frame.lineno}"


def log_folders(args) -> list[tuple[Path, bool]]:
    """Where the traceback of an unexpected error goes, (folder, may create it): the command's
    existing output folder when it has one, else the user's cache folder, else the temporary folder."""
    folders = []
    out = getattr(args, "out", None) if args is not None else None
    if isinstance(out, str) and out:
        path = Path(out)
        folders.append((path if path.is_dir() else path.parent, False))
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return folders + [(Path(cache) / "autoprompt_search", True), (Path(tempfile.gettempdir()), False)]


def _write_log(args, error: BaseException) -> str:
    text = (f"search-templates {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\nargv: {sys.argv!r}\n\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    for folder, create in log_folders(args):
        try:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            if folder.is_dir():
                path = folder / LOG_NAME
                path.write_text(text, encoding="utf-8", errors="backslashreplace")
                return str(path)
        except OSError:
            continue
    return f"nowhere (no writable folder); rerun with {DEBUG_FLAG}"


if __name__ == "__main__":
    sys.exit(main())
