"""Subcommands of `effdet-video`: one module per command, each exposing a click command named `command`.
`effdet_video.cli.COMMANDS` lists the names; `common.py` holds the options they share."""
