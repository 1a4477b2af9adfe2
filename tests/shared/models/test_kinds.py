"""The registry of model kinds: defaults from the settings, and what reads each entry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ops.bootstrap import default_jobs
from shared.config import Settings
from shared.data.datasets import Limits, normalize
from shared.errors import InputError
from shared.jobs import jobtypes
from shared.jobs.params import Params
from shared.models import kinds
from tests.fixtures import toykind


def test_the_built_in_kinds_keep_their_default_model_settings() -> None:
    assert kinds.default_models(Settings()) == {"text": "text-default", "image": "image-default"}
    settings = Settings(default_text_model="t2")  # AIGC_DEFAULT_TEXT_MODEL, as before
    assert kinds.get("text").default_model(settings) == "t2"


def test_default_models_name_a_plugin_kinds_default_and_win_over_the_old_settings() -> None:
    settings = Settings(default_text_model="t2", default_models="text=t3, toy=toy-1")
    assert kinds.default_models(settings) == {
        "text": "t3",
        "image": "image-default",
        "toy": "toy-1",
    }
    with pytest.raises(ValidationError, match="kind=name"):
        Settings(default_models="toy")


def test_an_unknown_kind_is_refused_by_name_and_by_a_job_type() -> None:
    with pytest.raises(InputError, match="known kinds: text, image"):
        kinds.get("audio")
    with pytest.raises(InputError, match="unknown model kind 'audio'"):
        jobtypes.register(
            jobtypes.JobType("audio.generate", Params, "generate", "m:f", "required", "audio")
        )
    with pytest.raises(InputError):
        jobtypes.get("audio.generate")  # not registered


def test_an_upload_goes_to_the_normaliser_its_kind_names() -> None:
    data = normalize("weights.TOY", b"1 2", Limits())
    assert (data.kind, data.items, data.suffix) == (toykind.KIND, 2, ".npy")
    assert normalize("a.txt", b"words", Limits()).kind == "text"
    with pytest.raises(
        InputError, match=r"\.txt \(text\), \.zip \(image\), \.npz \(image\), \.toy \(toy\)"
    ):
        normalize("a.wav", b"RIFF", Limits())


def test_bootstrap_trains_each_kinds_default_model_in_the_kinds_order() -> None:
    jobs = default_jobs(Settings(default_image_model="pictures", default_models="toy=toy-1"))
    # The toy kind names a default model but no bootstrap training: nothing is trained for it.
    assert [(j.type, j.model) for j in jobs] == [
        ("text.train", "text-default"),
        ("image.train", "pictures"),
    ]
    assert jobs[0].params == dict(kinds.get("text").bootstrap.params)  # type: ignore[union-attr]
