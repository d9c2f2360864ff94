"""`convlab conv-arith`: output size, receptive field and parameters of one convolution, worked out."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "conv-arith",
        help="work out a convolution's output size, receptive field and parameters",
        description="Output size (W - K + 2P)/S + 1 with the kernel's dilated span, worked out as in "
        "the notes. A stride that does not tile the input is reported with the paddings and strides "
        "that would (exit status 1).",
    )
    parser.add_argument("--size", type=int, required=True, metavar="W", help="input width (= height)")
    parser.add_argument("--kernel", type=int, required=True, metavar="K", help="kernel size")
    parser.add_argument("--stride", type=int, default=1, metavar="S")
    parser.add_argument("--padding", type=int, default=0, metavar="P")
    parser.add_argument("--dilation", type=int, default=1, metavar="D")
    parser.add_argument(
        "--in-channels", type=int, default=None, metavar="C", help="input depth (for parameters)"
    )
    parser.add_argument(
        "--out-channels", type=int, default=None, metavar="F", help="number of filters (for parameters)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="accept a stride that does not fit and floor the size, as PyTorch does",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: the parser loads every command module, and this import loads torch
    from convlab.analysis.conv_arith import DoesNotFitError, conv_arithmetic

    try:
        result = conv_arithmetic(
            args.size,
            args.kernel,
            stride=args.stride,
            padding=args.padding,
            dilation=args.dilation,
            in_channels=args.in_channels,
            out_channels=args.out_channels,
            exact=not args.floor,
        )
    except DoesNotFitError as error:
        print(
            f"{error.result.formula}: does not fit: a {args.kernel}x{args.kernel} window with stride "
            f"{args.stride} cannot tile a {args.size}x{args.size} input padded by {args.padding}."
        )
        for suggestion in error.suggestions:
            print(f"  {suggestion}")
        print("  (--floor accepts it and floors the size, as PyTorch does)")
        sys.stdout.flush()
        return 1
    for line in result.explain():
        print(line)
    return 0
