"""The ``squall`` command line."""

from __future__ import annotations

import click

from squall import __version__


@click.group()
@click.version_option(__version__, prog_name="squall")
def cli() -> None:
    """Squall: self-hosted serverless compute that speaks the AWS Lambda API."""


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 9000; 0 picks a free one).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where functions, code and logs live.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None, help="A TOML settings file.")
@click.option("--isolation", type=click.Choice(["auto", "process", "linux"]), default=None, help="Sandbox backend.")
def server(host: str | None, port: int | None, data_dir: str | None, config_file: str | None, isolation: str | None) -> None:
    """Run the Squall server in the foreground."""
    from pydantic import ValidationError

    from squall.server import serve
    from squall.settings import Settings

    try:
        settings = Settings.load(config_file, host=host, port=port, data_dir=data_dir, isolation=isolation)
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc
    try:
        serve(settings, announce=lambda line: click.echo(line))
    except OSError as exc:
        raise click.ClickException(f"{exc}. Is another server using port {settings.port}? Try --port 0.") from exc


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
