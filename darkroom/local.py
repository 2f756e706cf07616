"""Commands about this machine's embedded services."""

import click

from jobs.settings import load_settings
from transport.embedded import stop_embedded


@click.command()
def down() -> None:
    """Stop the embedded Redis darkroom started on this machine."""
    settings = load_settings()
    if stop_embedded(settings.home):
        click.echo(f"stopped the embedded Redis under {settings.home}")
    else:
        click.echo("no embedded Redis is running")
