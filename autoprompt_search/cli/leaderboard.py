"""`search-templates leaderboard`: print the ranking of a search and plot it."""
from __future__ import annotations

from pathlib import Path


def build_leaderboard_parser(sub) -> None:
    parser = sub.add_parser("leaderboard", help="print the ranking of a search and plot it")
    parser.add_argument("--out", required=True, help="the search's output folder (or its leaderboard.sqlite)")
    parser.add_argument("--budget", type=int, help="rank at this training budget (default: each candidate's highest)")
    parser.add_argument("--limit", type=int, default=20, help="rows to print")
    parser.add_argument("--plot", help="write the per-rung plot to this PNG (default OUT/progress.png)")
    parser.set_defaults(func=run_leaderboard)


def run_leaderboard(args) -> int:
    from ..export import open_leaderboard
    from ..search import plot_leaderboard

    leaderboard = open_leaderboard(args.out)
    print(leaderboard.to_table(budget=args.budget, limit=args.limit))
    folder = Path(args.out) if Path(args.out).is_dir() else Path(args.out).parent
    plot = plot_leaderboard(leaderboard, args.plot or folder / "progress.png")
    print(f"plot: {plot}")
    return 0
