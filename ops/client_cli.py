"""The ``aigc`` commands that go through the API over HTTP: submit, follow and list jobs,
generate, train, list models, and run batches.

They send ``AIGC_API_KEY``, or else the key saved in ``var/admin.key`` (``AIGC_API_KEY_FILE``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from pydantic import BaseModel

from ops.client import ApiError, Client
from shared.config import get_settings
from shared.jobs import jobtypes
from shared.jobs.schemas import JobsQuery
from shared.jobs.status import BATCH_TERMINAL, BatchStatus, JobStatus
from shared.models import kinds


def _default(schema: type[BaseModel], name: str) -> Any:
    """Return a field's default as the API's schema declares it (the CLI keeps no copy)."""
    return schema.model_fields[name].default


def _client() -> Client:
    from ops.keys import cli_key

    settings = get_settings()
    return Client(settings.public_api_url, api_key=cli_key(settings))


def _parse_param(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {item!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


@click.command()
@click.argument("job_type")
@click.option("--model", "-m", default=None, help="Model name or name:version.")
@click.option("--param", "-p", "params", multiple=True, help="key=value (value parsed as JSON).")
def submit(job_type: str, model: str | None, params: tuple[str, ...]) -> None:
    """Submit a job and print its id."""
    body = dict(_parse_param(p) for p in params)
    job = _call(lambda: _client().submit(job_type, model, body))
    click.echo(job["id"])


@click.command()
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
def wait(job_id: str, timeout: float | None) -> None:
    """Wait until a job is terminal, with a progress bar; exit 1 unless it succeeded."""
    from ops.progress import wait_with_bar

    job = _call(lambda: wait_with_bar(_client(), job_id, timeout))
    click.echo(json.dumps({k: job[k] for k in ("id", "status", "result", "error")}, indent=2))
    sys.exit(0 if job["status"] == JobStatus.SUCCEEDED else 1)


@click.command()
@click.option("--status", default=None)
@click.option("--type", "type_", default=None)
@click.option("--limit", default=_default(JobsQuery, "limit"), show_default=True)
def jobs(status: str | None, type_: str | None, limit: int) -> None:
    """List recent jobs, newest first."""
    query = {k: v for k, v in {"status": status, "type": type_, "limit": limit}.items() if v}
    page = _call(lambda: _client().request("GET", "/v1/jobs", params=query).json())
    for job in page["data"]:
        click.echo(f"{job['id']}  {job['status']:<9}  {job['type']:<15}  {job['created_at']}")


def _call(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


# -- models --------------------------------------------------------------------------------
# A JSON Schema type to the click type of an option (an optional param's schema has a null too).
CLICK_TYPES = {"integer": int, "number": float, "string": str, "boolean": bool}


def _kinds() -> list[kinds.ModelKind]:
    """Return the model kinds, a plugin's (``AIGC_PLUGINS``) included."""
    jobtypes.load_plugins(get_settings().plugins)
    return kinds.all_kinds()


class KindCommands(click.Group):
    """``aigc generate <kind>``: one command per model kind with a generate form, built lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the kinds that can generate."""
        return [k.name for k in _kinds() if k.generate is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Return the command of the kind called ``name``, with its form's fields as params."""
        kind = next((k for k in _kinds() if k.name == name and k.generate), None)
        return None if kind is None else _generate_command(kind)


@click.group(cls=KindCommands)
def generate() -> None:
    """Generate with a registered model of a kind (text, image, ...) and wait for the result."""


def _generate_command(kind: kinds.ModelKind) -> click.Command:
    """Return ``aigc generate <kind>``: its form's fields, and the model, stream and out options."""
    form = kind.generate
    assert form is not None  # KindCommands offers kinds with a form only
    schema = jobtypes.get(form.job_type).params.model_json_schema()
    params = [_form_param(schema, f) for f in form.fields]
    params += [
        click.Option(["--model", "-m"], help=f"Model name[:version] (default {kind.name} model)."),
        click.Option(["--stream"], is_flag=True, help="Print text as it is decoded (SSE)."),
        click.Option(
            ["--out", "out_dir"],
            type=click.Path(file_okay=False),
            default="images",
            show_default=True,
            help="Where generated images are saved.",
        ),
    ]

    def run(model: str | None, stream: bool, out_dir: str, **values: Any) -> None:
        _generate(kind, form.job_type, model, _compact(values), stream, out_dir)

    about = f"Submit {form.job_type} with a {kind.name} model, wait, and show the result."
    return click.Command(kind.name, callback=run, params=params, help=about)


def _form_param(schema: dict[str, Any], field: kinds.FormField) -> click.Parameter:
    """Return a form field as a click argument or option, its type and default from the schema."""
    prop = schema["properties"][field.name]
    types = [p.get("type") for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    type_ = CLICK_TYPES.get(types[0] if types else "string", str)
    if field.argument:
        return click.Argument([field.name], type=type_)
    flag = "--" + field.name.replace("_", "-")
    default = prop.get("default")
    return click.Option(
        [flag, field.name], type=type_, default=default, show_default=True, help=field.label
    )


def _generate(
    kind: kinds.ModelKind,
    job_type: str,
    model: str | None,
    params: dict[str, Any],
    stream: bool,
    out_dir: str,
) -> None:
    """Submit a generate job, wait for it (or stream it), and show its result."""
    from ops.progress import wait_with_bar

    client = _client()
    model = model or kind.default_model(get_settings())
    job = _call(lambda: client.submit(job_type, model, params))
    prompt = str(params.get("prompt", ""))
    if stream:
        job = _call(lambda: _print_stream(client, job["id"], prompt))
    else:
        job = _call(lambda: wait_with_bar(client, job["id"], label="generating"))
    _exit_unless_succeeded(job)
    if not stream:
        _show(client, job, prompt, out_dir)


def _print_stream(client: Client, job_id: str, prompt: str) -> dict[str, Any]:
    """Print the prompt, then each piece of text as it arrives; return the finished job."""
    click.echo(prompt, nl=False)
    for name, data in client.events(job_id):
        if name == "text":
            click.echo(data["text"], nl=False)
        elif name == "result":
            click.echo()
            return data
    raise click.ClickException("the event stream ended before the job")


def _show(client: Client, job: dict[str, Any], prompt: str, out_dir: str) -> None:
    """Print a result's text, save its images as PNG files in ``out_dir``, or print its JSON."""
    result = job["result"]
    if isinstance(result.get("text"), str):
        click.echo(prompt + result["text"])
    if isinstance(result.get("images"), list):
        _save_images(client, job["id"], result["images"], out_dir)
    if "text" not in result and "images" not in result:
        click.echo(json.dumps(result, indent=2))


def _save_images(client: Client, job_id: str, images: list[dict[str, Any]], out_dir: str) -> None:
    from pathlib import Path

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        path = folder / f"{job_id[:8]}-{i:02d}.png"
        path.write_bytes(_call(lambda url=image["url"]: client.download(url)))
        click.echo(str(path))


@click.command()
@click.argument("kind")
@click.option("--model", "-m", required=True, help="Name to register the trained model under.")
@click.option("--param", "-p", "params", multiple=True, help="key=value, e.g. -p epochs=3.")
def train(kind: str, model: str, params: tuple[str, ...]) -> None:
    """Train a model of KIND (text, image, ...), showing its progress; print the version."""
    from ops.progress import wait_with_bar

    trainable = {k.name: k.train_job_type for k in _kinds() if k.train_job_type}
    if kind not in trainable:
        raise click.BadParameter(f"one of: {', '.join(trainable)}", param_hint="KIND")
    client = _client()
    body = dict(map(_parse_param, params))
    job = _call(lambda: client.submit(trainable[kind], model, body))
    click.echo(f"training job {job['id']}", err=True)
    job = _call(lambda: wait_with_bar(client, job["id"], label=f"training {model}"))
    _exit_unless_succeeded(job)
    click.echo(json.dumps(job["result"], indent=2))


@click.command()
def models() -> None:
    """List registered models and their versions."""
    data = _call(lambda: _client().request("GET", "/v1/models").json())["data"]
    for m in data:
        latest = m["versions"][0] if m["versions"] else {}
        metrics = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (latest.get("metrics") or {}).items()
        )
        click.echo(f"{m['name']:<20} {m['kind']:<6} v{m['latest_version']}  {metrics}")


@click.group()
def batch() -> None:
    """Submit bulk batches and collect their results."""


@batch.command("submit")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--type", "type_", required=True, help="Job type of every item.")
@click.option("--model", "-m", default=None)
def batch_submit(path: str, type_: str, model: str | None) -> None:
    """Upload a JSONL file of {custom_id, params} lines and print the batch id."""
    client = _client()
    with open(path, "rb") as fh:
        data = {"type": type_, **({"model": model} if model else {})}
        resp = _call(
            lambda: client.request("POST", "/v1/batches", data=data, files={"file": (path, fh)})
        )
    click.echo(resp.json()["id"])


@batch.command("wait")
@click.argument("batch_id")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the JSONL results here.",
)
def batch_wait(batch_id: str, out_path: str | None) -> None:
    """Follow a batch with a progress bar, then save its results."""
    import time

    client = _client()
    url = f"/v1/batches/{batch_id}"
    with click.progressbar(length=1000, label=batch_id[:8], file=sys.stderr) as bar:
        while True:
            status = _call(lambda: client.request("GET", url).json())
            bar.update(int(status["progress"] * 1000) - bar.pos)
            if status["status"] in BATCH_TERMINAL:
                break
            time.sleep(1)
    click.echo(json.dumps({k: status[k] for k in ("status", "counts")}), err=True)
    if out_path:
        resp = _call(lambda: client.request("GET", f"{url}/results", stream=True))
        with open(out_path, "wb") as fh:
            for chunk in resp.iter_content(64 * 1024):
                fh.write(chunk)
    sys.exit(0 if status["status"] == BatchStatus.COMPLETED else 1)


def _compact(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _exit_unless_succeeded(job: dict[str, Any]) -> None:
    if job["status"] != JobStatus.SUCCEEDED:
        error = job.get("error") or {}
        raise click.ClickException(f"job {job['status']}: {error.get('message', '')}")


COMMANDS: list[click.Command] = [submit, wait, jobs, generate, train, models, batch]
