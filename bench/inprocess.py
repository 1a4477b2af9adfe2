"""In-process ceilings and the worker's batched path, with no stack: runs on any Keras backend.

``python -m bench.inprocess [--preset small] [--batches 1,8,64] [--max-tokens 64]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import wait
from dataclasses import replace
from typing import Any

import numpy as np


def machine() -> dict[str, Any]:
    """Describe the machine and backend the figures come from."""
    import keras

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "platform": platform.machine(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
    }


def text_generator(preset: str) -> Any:
    """Return a TextGenerator over the same untrained model the bench registers for ``preset``."""
    import keras

    from bench.models import text_config
    from worker.ml.decode import TextGenerator
    from worker.ml.text import build_text_model

    keras.utils.set_random_seed(0)
    return TextGenerator(build_text_model(text_config(preset)[0]))


def _prompts(batch: int, vocab: int, length: int = 8) -> list[list[int]]:
    rng = np.random.default_rng(1)
    return rng.integers(2, vocab, size=(batch, length)).tolist()


def text_ceiling(gen: Any, batch: int, max_tokens: int, repeats: int = 3) -> float:
    """Tokens/s of the compiled decode loop alone: one call per batch, no queue."""
    prompts = _prompts(batch, gen.vocab_size)
    args = ([max_tokens] * batch, [1.0] * batch, [None] * batch, list(range(batch)))
    gen.generate(prompts, *args)  # compile
    started = time.perf_counter()
    for _ in range(repeats):
        gen.generate(prompts, *args)
    return batch * max_tokens * repeats / (time.perf_counter() - started)


def scheduler_path(
    gen: Any, batch: int, max_tokens: int, chunk_steps: int, repeats: int = 3
) -> float:
    """Tokens/s through the worker's continuous-batching scheduler with ``batch`` requests."""
    from worker.scheduler import TextRequest, TextScheduler

    sched = TextScheduler(gen, max_batch=batch, chunk_steps=chunk_steps)
    prompts = _prompts(batch, gen.vocab_size)

    def run() -> None:
        futures = [
            sched.submit(TextRequest(p, max_tokens, 1.0, None, i)) for i, p in enumerate(prompts)
        ]
        wait(futures)

    try:
        run()  # compile the shapes this batch needs
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        return batch * max_tokens * repeats / (time.perf_counter() - started)
    finally:
        sched.close()


def single_latency(gen: Any, max_tokens: int, chunk_steps: int, repeats: int = 10) -> dict:
    """Seconds for one lone request: through the batching scheduler, and decoded directly."""
    from worker.scheduler import TextRequest, TextScheduler

    prompt = _prompts(1, gen.vocab_size)[0]
    direct_args = ([prompt], [max_tokens], [1.0], [None], [0])
    gen.generate(*direct_args)
    started = time.perf_counter()
    for _ in range(repeats):
        gen.generate(*direct_args)
    direct = (time.perf_counter() - started) / repeats
    sched = TextScheduler(gen, max_batch=64, chunk_steps=chunk_steps)
    try:
        sched.submit(TextRequest(prompt, max_tokens, 1.0, None, 0)).result()
        started = time.perf_counter()
        for _ in range(repeats):
            sched.submit(TextRequest(prompt, max_tokens, 1.0, None, 0)).result()
        batched = (time.perf_counter() - started) / repeats
    finally:
        sched.close()
    return {"direct_s": direct, "scheduler_s": batched}


def image_rates(batch: int, total: int, image_size: int = 32) -> dict[str, float]:
    """Images/s of the generator alone and with PNG encoding, at one batch size."""
    import keras

    from shared.models.presets import IMAGE_PRESETS
    from worker.ml.image import build_generator, encode_png, generate_images

    keras.utils.set_random_seed(0)
    gen = build_generator(replace(IMAGE_PRESETS["default"], image_size=image_size))
    generate_images(gen, batch, 0)  # compile
    rounds = max(total // batch, 1)
    started = time.perf_counter()
    for i in range(rounds):
        generate_images(gen, batch, i)
    alone = rounds * batch / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(rounds):
        for img in generate_images(gen, batch, i):
            encode_png(img)
    with_png = rounds * batch / (time.perf_counter() - started)
    return {"generator_images_per_s": alone, "generator_png_images_per_s": with_png}


def fit_rate(preset: str, chars: int, epochs: int = 1) -> dict[str, float]:
    """Tokens/s of bare ``model.fit`` on the built-in corpus, as a text.train job would run it."""
    import keras

    from shared.models.tokenizers import Tokenizer
    from worker.handlers.text_train import builtin_corpus
    from worker.ml.text import (
        PRESETS,
        build_text_model,
        compile_text_model,
        config_for_tokenizer,
        make_windows,
    )

    keras.utils.set_random_seed(0)
    corpus = builtin_corpus()[:chars]
    cfg = PRESETS[preset]
    tokenizer = Tokenizer.fit(cfg.tokenizer, corpus, cfg.vocab_size)
    cfg = config_for_tokenizer(cfg, tokenizer)
    x, y, xv, yv = make_windows(np.asarray(tokenizer.encode(corpus)), cfg.seq_len, 0.1)
    model = build_text_model(cfg)
    compile_text_model(model, cfg.learning_rate)
    started = time.perf_counter()
    model.fit(x, y, validation_data=(xv, yv), epochs=epochs, batch_size=cfg.batch_size, verbose=0)
    seconds = time.perf_counter() - started
    return {"tokens_per_s": x.size * epochs / seconds, "seconds": seconds, "tokens": x.size}


def main() -> None:
    """Print the in-process figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--chunk-steps", type=int, default=16)
    parser.add_argument("--image-batches", default="64")
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args()
    gen = text_generator(args.preset)
    report: dict[str, Any] = {"machine": machine(), "preset": args.preset, "text": [], "images": []}
    for batch in (int(b) for b in args.batches.split(",")):
        ceiling = text_ceiling(gen, batch, args.max_tokens)
        path = scheduler_path(gen, batch, args.max_tokens, args.chunk_steps)
        report["text"].append(
            {
                "batch": batch,
                "ceiling_tokens_per_s": round(ceiling, 1),
                "worker_path_tokens_per_s": round(path, 1),
                "ratio": round(path / ceiling, 3),
            }
        )
        print(json.dumps(report["text"][-1]), flush=True)
    report["single_request"] = single_latency(gen, args.max_tokens, args.chunk_steps)
    print(json.dumps(report["single_request"]), flush=True)
    for batch in (int(b) for b in args.image_batches.split(",")):
        rates = image_rates(batch, args.images)
        report["images"].append({"batch": batch, **{k: round(v, 1) for k, v in rates.items()}})
        print(json.dumps(report["images"][-1]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
