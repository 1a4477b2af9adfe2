"""JSON log lines, and the running job's fields on every line written while it runs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from types import SimpleNamespace

from shared.observe.logs import job_fields, use_json


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger(f"test-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(out))
    use_json(logger)
    return logger, out


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _job(attempts: int = 1, batch: uuid.UUID | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid.uuid4(), batch_id=batch, tenant_id=uuid.uuid4(), attempts=attempts
    )


def test_lines_in_a_job_carry_its_fields_and_others_none() -> None:
    logger, out = _logger()
    job = _job(attempts=2)
    logger.info("before")
    with job_fields(job):
        logger.warning("inside %s", "it")
    logger.info("after")
    before, inside, after = _lines(out)
    assert inside["message"] == "inside it" and inside["level"] == "WARNING"
    assert (inside["job_id"], inside["batch_id"], inside["tenant"], inside["attempt"]) == (
        str(job.id),
        None,
        str(job.tenant_id),
        2,
    )
    assert {"time", "logger", "pid", "thread"} <= set(inside)
    assert "job_id" not in before and "job_id" not in after


def test_a_chunk_names_its_row_and_its_batch_and_nesting_restores_the_outer_job() -> None:
    logger, out = _logger()
    batch = uuid.uuid4()
    outer, chunk = _job(), _job(attempts=3, batch=batch)
    with job_fields(outer):
        with job_fields(chunk):
            logger.error("chunk", exc_info=ValueError("bad"))
        logger.info("outer")
    inner, after = _lines(out)
    assert (inner["job_id"], inner["batch_id"], inner["attempt"]) == (str(chunk.id), str(batch), 3)
    assert "ValueError: bad" in inner["exc_info"]
    assert (after["job_id"], after["batch_id"]) == (str(outer.id), None)
