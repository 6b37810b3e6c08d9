"""Regenerate tests/deploy/az_cli_spec.json from an installed Azure CLI's own argument registry.

Why: the stand-in `az` (fake_az.py) refuses every argv the real CLI's parser would refuse (unknown option, an
option without its value, a missing required option, a value outside the choices, a non-integer where the CLI
declares `type=int`). Those rules are read here from the CLI's own parser, not written from memory.

    python -m venv /tmp/azcli && /tmp/azcli/bin/pip install azure-cli==2.91.0
    AZURE_CONFIG_DIR=$(mktemp -d) /tmp/azcli/bin/python tests/deploy/dump_az_spec.py > tests/deploy/az_cli_spec.json

Runs under the CLI's own interpreter (it imports `azure.cli.core`); it needs no login and calls nothing remote.
"""

from __future__ import annotations

import json
import sys
from typing import Any

COMMANDS = (
    "account get-access-token",
    "account show",
    "functionapp config appsettings list",
    "functionapp config appsettings set",
    "functionapp create",
    "functionapp deployment config set",
    "functionapp deployment config show",
    "functionapp function keys list",
    "functionapp identity assign",
    "functionapp identity show",
    "functionapp plan create",
    "functionapp plan show",
    "functionapp plan update",
    "functionapp restart",
    "functionapp scale config always-ready delete",
    "functionapp scale config always-ready set",
    "functionapp scale config set",
    "functionapp scale config show",
    "functionapp show",
    "group create",
    "group delete",
    "group show",
    "keyvault create",
    "keyvault recover",
    "keyvault secret list",
    "keyvault secret set",
    "keyvault secret show",
    "keyvault show",
    "keyvault show-deleted",
    "deployment group create",
    "deployment group delete",
    "deployment group show",
    "monitor action-group create",
    "monitor action-group show",
    "monitor log-analytics workspace create",
    "monitor log-analytics workspace show",
    "resource delete",
    "resource list",
    "resource show",
    "resource tag",
    "resource update",
    "rest",
    "role assignment create",
    "role assignment list",
    "storage account create",
    "storage account show",
    # keyless (--auth entra, --rotate-trigger-secret)
    "ad app create",
    "ad app credential delete",
    "ad app credential list",
    "ad app credential reset",
    "ad app list",
    "ad app update",
    "ad sp create",
    "ad sp show",
    "functionapp config appsettings delete",
    "identity create",
    "identity show",
)


def dump(commands: tuple[str, ...] = COMMANDS) -> dict[str, Any]:
    """Each command's options as the CLI's own parser holds them, after every argument hook the invoker runs
    (global options, `--ids`, `--subscription`): the argparse actions `az` parses the command line with."""
    import argparse

    from azure.cli.core import __version__, get_default_cli  # the CLI's own interpreter only
    from knack import events

    out: dict[str, Any] = {}
    for verb in commands:
        # A CLI of its own per command: a parser holds one command table.
        cli = get_default_cli()
        invocation = cli.invocation_cls(
            cli_ctx=cli, parser_cls=cli.parser_cls, commands_loader_cls=cli.commands_loader_cls, help_cls=cli.help_cls
        )
        invocation.data = {"command_string": ""}
        cli.invocation = invocation
        loader = invocation.commands_loader
        loader.load_command_table(verb.split())
        invocation.data["command_string"] = verb
        loader.command_name = verb
        loader.load_arguments(verb)
        cli.raise_event(events.EVENT_INVOKER_POST_CMD_TBL_CREATE, commands_loader=loader)
        invocation.parser.cli_ctx = cli
        invocation.parser.load_command_table(loader)
        spec = {}
        for action in invocation.parser.subparser_map[verb]._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or "--help" in action.option_strings:
                continue
            kind = "value"
            if action.nargs == 0:
                kind = "flag"
            elif action.nargs in ("+", "*"):
                kind = "multi"
            elif action.nargs == "?":
                kind = "optional-value"
            entry: dict[str, Any] = {"options": list(action.option_strings), "kind": kind, "required": action.required}
            if action.choices:
                entry["choices"] = [str(c) for c in action.choices]
            type_name = getattr(action.type, "__name__", None)
            if type_name in ("int", "float"):
                entry["type"] = type_name
            spec[action.dest] = entry
        out[verb] = spec
    return {
        "source": f"azure-cli {__version__}: the argparse actions of its own parser, by tests/deploy/dump_az_spec.py",
        "commands": out,
    }


if __name__ == "__main__":
    json.dump(dump(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
