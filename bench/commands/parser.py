"""The parser of `python -m bench`: the global flags, then each subcommand's own parser, in the
order `-h` lists them."""
from __future__ import annotations

from . import check, listing, overhead, run, show
from .usage import Parser


def build_parser() -> Parser:
    p = Parser(prog="python -m bench", description="lstm-bench: LSTM vs CNN on MNIST in torch, TF/Keras and JAX")
    p.add_argument("--results-dir", default="results", help="where runs are stored (default: ./results)")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)
    run.add_parser(sub)
    listing.add_parser(sub)
    show.add_show_parser(sub)
    check.add_parsers(sub)
    show.add_plot_and_export_parsers(sub)
    overhead.add_parser(sub)
    return p
