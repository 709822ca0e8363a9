"""The sub-commands other than `serve`: one module each, each a function of its argv and the
settings that returns an ExitCode (cli.py is the only place that exits)."""
