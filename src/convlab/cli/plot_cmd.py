"""`convlab plot`: draw a run folder's logged figures again, as a PNG: its curves or its gradient flow."""

from __future__ import annotations

from pathlib import Path

from convlab.errors import ConvlabError

WHAT = {
    "curves": "loss, top-1 and learning rate per epoch, from metrics.csv (curves.png)",
    "gradients": "gradient norm per layer over depth and over steps, and the update ratio, from gradients.csv "
    "(gradients.png; train with --log-gradients)",
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a run's training curves or gradient flow as a PNG",
        description="Draw what a run logged: "
        + "; ".join(f"{name}: {text}" for name, text in WHAT.items())
        + ". The PNG goes into the run folder unless --out says otherwise.",
    )
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder written by `convlab train`")
    parser.add_argument(
        "--what", choices=tuple(WHAT), default="curves", help="what to draw (default: curves)"
    )
    parser.add_argument(
        "--out", metavar="FILE.png", help="where to write the PNG (default: RUN_DIR/WHAT.png)"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise ConvlabError(f"No run folder at '{run_dir}'; give a folder written by `convlab train`.")
    out = Path(args.out) if args.out else run_dir / f"{args.what}.png"
    if args.what == "curves":
        from convlab.report import plot_curves

        plot_curves(run_dir / "metrics.csv", out)
    else:
        from convlab.report.gradients import plot_gradients, read_gradients

        plot_gradients(read_gradients(run_dir), out, title=run_dir.name)
    print(out)
    return 0
