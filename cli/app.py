"""The `v2m` commands: convert, jobs, status, download, login.

Exit codes: 0 every file converted; 1 some failed (or the API could not be reached);
2 usage or configuration error (bad options, no or refused credentials); 130 on Ctrl-C.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli import __version__
from cli.client import ApiClient
from cli.client import login as fetch_tokens
from cli.config import Credentials, Settings, resolve, resolve_url, save_login
from cli.convert import Converter, Plan, clashing_outputs, output_path
from cli.errors import ApiError, CliError, ConfigError
from cli.report import JsonReporter, Reporter, RichReporter
from cli.resume import UploadState

app = typer.Typer(
    name="v2m",
    help="Convert videos to MP3 with a video2mp3 API: upload, convert, download.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)

ApiUrl = Annotated[
    str | None,
    typer.Option("--api-url", envvar="V2M_API_URL", help="The API (default: the config file's)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="V2M_API_KEY", help="An API key (v2m_…).", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"v2m {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Convert videos to MP3 with a video2mp3 API: upload, convert, download."""


@contextmanager
def failing_with_exit_codes() -> Iterator[None]:
    """A CliError becomes its sentence on stderr and its exit code."""
    try:
        yield
    except CliError as exc:
        err.print(f"[red]v2m: {exc.message}[/red]", highlight=False)
        raise typer.Exit(exc.exit_code) from exc


@contextmanager
def connected(api_url: str | None, api_key: str | None) -> Iterator[ApiClient]:
    client = ApiClient.open(resolve(api_url, api_key))
    try:
        yield client
    finally:
        client.close()


def job_options(
    fmt: str | None, bitrate: int | None, quality: int | None, mono: bool, sample_rate: int | None
) -> dict[str, Any]:
    if bitrate is not None and quality is not None:
        raise typer.BadParameter("give --bitrate (constant) or --quality (variable), not both")
    options = {
        "format": fmt,
        "bitrate_kbps": bitrate,
        "quality": quality,
        "channels": 1 if mono else None,
        "sample_rate_hz": sample_rate,
    }
    return {k: v for k, v in options.items() if v is not None}


@app.command()
def convert(
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, readable=True, help="Videos to convert."),
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output-dir",
            file_okay=False,
            help="Where to save (default: beside each input).",
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Output format, sent as options.format.")
    ] = None,
    bitrate: Annotated[int | None, typer.Option(help="Constant bitrate, kbit/s.")] = None,
    quality: Annotated[int | None, typer.Option(help="VBR quality, 0 (best) .. 9.")] = None,
    mono: Annotated[bool, typer.Option("--mono", help="One channel.")] = False,
    sample_rate: Annotated[int | None, typer.Option(help="Output sample rate, Hz.")] = None,
    parallel: Annotated[int, typer.Option(min=1, max=16, help="Files at once.")] = 3,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Upload each file, convert it, follow it live and save the result.

    Running the same command again resumes: finished outputs are skipped, and a file whose
    job exists is not uploaded or converted again (its output is downloaded if missing)."""
    options = job_options(fmt, bitrate, quality, mono, sample_rate)
    plan = Plan(options, (fmt or "mp3").lower(), output_dir, overwrite, parallel)
    with failing_with_exit_codes(), connected(api_url, api_key) as client:
        if clashes := clashing_outputs(files, plan):
            raise ConfigError("; ".join(clashes) + ". Give each a distinct name or output dir.")
        client.me()  # an unreachable API or a refused key is said once, up front
        try:
            client.check_options(options)
        except ApiError as exc:
            if exc.status != 422:
                raise
            raise ConfigError(exc.message) from exc  # options the API refuses: a usage error
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
        reporter: Reporter
        if as_json:
            reporter = JsonReporter()
        elif Console().is_terminal:
            reporter = RichReporter()
        else:
            reporter = Reporter()
        converter = Converter(client, UploadState(client.api_url), reporter, plan)
        reporter.start(files)
        try:
            outcomes = converter.run(files)
        except KeyboardInterrupt:
            reporter.stop()
            err.print("Interrupted: run the same command again to resume.")
            raise typer.Exit(130) from None
        reporter.stop()
        reporter.finish(outcomes)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


@app.command()
def jobs(
    status: Annotated[
        str | None, typer.Option(help="queued, processing, completed or failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List your jobs, newest first."""
    with failing_with_exit_codes(), connected(api_url, api_key) as client:
        items = client.list_jobs(status, limit)
    if as_json:
        for job in items:
            typer.echo(json.dumps(job))
        return
    table = Table("id", "status", "progress", "file", "created")
    for job in items:
        table.add_row(
            job["id"],
            job["status"],
            f"{job['progress']}%",
            job["input"]["filename"],
            job["created_at"],
        )
    Console().print(table)


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one job."""
    with failing_with_exit_codes(), connected(api_url, api_key) as client:
        job = client.get_job(job_id)
    if as_json:
        typer.echo(json.dumps(job))
        return
    typer.echo(f"{job['id']}  {job['status']}  {job['progress']}%  {job['input']['filename']}")
    if job.get("error"):
        typer.echo(f"error: {job['error']['code']}: {job['error']['message']}")
    if job.get("output"):
        out = job["output"]
        typer.echo(f"output: {out['size_bytes']} bytes, {out['duration_s']:.1f} s")


@app.command()
def download(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File or directory to save to.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing file.")
    ] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Save a completed job's output (default: named after its input, here)."""
    with failing_with_exit_codes(), connected(api_url, api_key) as client:
        job = client.get_job(job_id)
        fmt = str(job.get("options", {}).get("format") or "mp3")
        named = output_path(Path(Path(job["input"]["filename"]).name), None, fmt)
        dest = output / named.name if output is not None and output.is_dir() else output or named
        if dest.exists() and not overwrite:
            raise ConfigError(f"{dest} exists; pass --overwrite to replace it.")
        size = client.download(job_id, dest, lambda n, total: None, overwrite)
    typer.echo(f"saved {dest} ({size} bytes)")


@app.command()
def login(
    email: Annotated[str | None, typer.Option(help="Your account's email.")] = None,
    password: Annotated[
        str | None, typer.Option(envvar="V2M_PASSWORD", hidden=True, show_default=False)
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Log in and keep the credentials in the config file (mode 0600).

    With email and password (asked for) the API's access and refresh tokens are kept,
    never the password; with --api-key that key is checked and kept."""
    with failing_with_exit_codes():
        url = resolve_url(api_url)
        if api_key:
            credentials = Credentials(api_key=api_key)
        else:
            email = email or typer.prompt("Email")
            password = password or typer.prompt("Password", hide_input=True)
            pair = fetch_tokens(url, email, password)
            credentials = Credentials(
                access_token=pair["access_token"], refresh_token=pair["refresh_token"]
            )
        client = ApiClient.open(Settings(url, credentials))
        try:
            me = client.me()
        finally:
            client.close()
        path = save_login(url, credentials)
    typer.echo(f"Logged in to {url} as {me['email']}; credentials saved in {path}.")
