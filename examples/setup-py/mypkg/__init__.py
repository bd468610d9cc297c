"""Tiny example package: a greeting and a click command."""

import click

__version__ = "0.1.0"


def greet(name: str) -> str:
    return f"Hello, {name}!"


@click.command()
@click.option("--name", default="world")
def main(name: str) -> None:
    click.echo(greet(name))
