"""``rtsim machines``: the bundled machine models with their key limits."""

from __future__ import annotations

import argparse

from machine_models import available_models, describe_model, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="show only this model id (or a path to a TOML file)")


def run(args: argparse.Namespace) -> int:
    ids = [args.model] if args.model else available_models()
    for index, model_id in enumerate(ids):
        if index:
            print()
        for line in describe_model(load_model(model_id)):
            print(line)
    return 0
