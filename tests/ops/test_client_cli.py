"""``aigc generate <kind>`` and ``aigc train <kind>``: built from the registry of model kinds."""

from __future__ import annotations

from click.testing import CliRunner

from ops.client_cli import generate, train
from tests.fixtures import toykind  # registers the toy kind, as AIGC_PLUGINS would


def test_generate_offers_a_command_per_kind_with_its_form_and_schema_defaults() -> None:
    listed = CliRunner().invoke(generate, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert all(kind in listed.output for kind in ("text", "image", toykind.KIND))
    toy = CliRunner().invoke(generate, [toykind.KIND, "--help"])
    assert toy.exit_code == 0, toy.output
    assert "WORD" in toy.output  # the form's argument
    assert "--repeat INTEGER" in toy.output and "[default: 2]" in toy.output  # the schema's
    text = CliRunner().invoke(generate, ["text", "--help"]).output
    assert "PROMPT" in text and "--max-tokens" in text and "[default: 100]" in text


def test_train_refuses_a_kind_the_registry_lacks() -> None:
    result = CliRunner().invoke(train, ["audio", "-m", "x"])
    assert result.exit_code == 2
    assert "one of: text, image, toy" in result.output
