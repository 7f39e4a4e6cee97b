"""The subcommands of `python -m bench`: one module per subcommand (run, list, show/plot/export,
compare/check, check --calibrate, overhead), the parser assembly (parser.py), the selection flags
(selection.py), the run UI (ui.py) and the usage errors every command raises (usage.py).
bench.cli holds main: parse, dispatch, and turn usage errors into one line and exit 2."""
