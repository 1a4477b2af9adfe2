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
from shared.jobs.params import ImageGenerateParams, TextGenerateParams
from shared.jobs.schemas import JobsQuery
from shared.jobs.status import BATCH_TERMINAL, BatchStatus, JobStatus


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
@click.group()
def generate() -> None:
    """Generate text or images with a registered model and wait for the result."""


@generate.command("text")
@click.argument("prompt")
@click.option("--model", "-m", default=None, help="Model name[:version] (default text model).")
@click.option("--max-tokens", default=_default(TextGenerateParams, "max_tokens"), show_default=True)
@click.option(
    "--temperature", default=_default(TextGenerateParams, "temperature"), show_default=True
)
@click.option("--top-k", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--stream", is_flag=True, help="Print the text as it is decoded (SSE).")
def generate_text(
    prompt: str,
    model: str | None,
    max_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int | None,
    stream: bool,
) -> None:
    """Continue PROMPT and print the text."""
    from ops.progress import wait_with_bar

    client = _client()
    params = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "seed": seed,
    }
    model = model or get_settings().default_text_model
    job = _call(lambda: client.submit("text.generate", model, _compact(params)))
    if stream:
        _exit_unless_succeeded(_call(lambda: _print_stream(client, job["id"], prompt)))
        return
    job = _call(lambda: wait_with_bar(client, job["id"], label="generating"))
    _exit_unless_succeeded(job)
    click.echo(prompt + job["result"]["text"])


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


@generate.command("image")
@click.option("--model", "-m", default=None, help="Model name[:version] (default image model).")
@click.option("--n", "n", default=_default(ImageGenerateParams, "n"), show_default=True)
@click.option("--seed", type=int, default=None)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), default="images", show_default=True
)
def generate_image(model: str | None, n: int, seed: int | None, out_dir: str) -> None:
    """Generate N images and save them as PNG files in OUT."""
    from pathlib import Path

    from ops.progress import wait_with_bar

    client = _client()
    model = model or get_settings().default_image_model
    job = _call(lambda: client.submit("image.generate", model, _compact({"n": n, "seed": seed})))
    job = _call(lambda: wait_with_bar(client, job["id"], label="generating"))
    _exit_unless_succeeded(job)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(job["result"]["images"]):
        path = folder / f"{job['id'][:8]}-{i:02d}.png"
        path.write_bytes(_call(lambda url=image["url"]: client.download(url)))
        click.echo(str(path))


@click.command()
@click.argument("kind", type=click.Choice(["text", "image"]))
@click.option("--model", "-m", required=True, help="Name to register the trained model under.")
@click.option("--param", "-p", "params", multiple=True, help="key=value, e.g. -p epochs=3.")
def train(kind: str, model: str, params: tuple[str, ...]) -> None:
    """Train a text or image model, showing its progress, and print the registered version."""
    from ops.progress import wait_with_bar

    client = _client()
    job = _call(lambda: client.submit(f"{kind}.train", model, dict(map(_parse_param, params))))
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
