"""Text model: windows, training, evaluation and stateful chunked decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.ml.text import (
    PRESETS,
    TextGenerator,
    WindowSlices,
    bits_per_char,
    build_text_model,
    make_windows,
    metric_name,
    sample_from_logits,
    uniforms_for_seed,
)

pytestmark = pytest.mark.ml

PROMPTS = ["The ", "Python is", "x", "", "def f(a, b):\n    return"]


def test_make_windows_shifts_targets_and_keeps_tail_for_validation() -> None:
    ids = np.arange(101, dtype=np.int32)
    x_train, y_train, x_val, y_val = make_windows(ids, seq_len=10, val_split=0.2)
    assert x_train.shape == y_train.shape == (8, 10)
    assert x_val.shape == y_val.shape == (1, 10)
    np.testing.assert_array_equal(y_train, x_train + 1)
    np.testing.assert_array_equal(y_val, x_val + 1)
    assert x_val.min() > y_train.max() - 1  # validation comes strictly after training data


def test_presets_and_layer_names() -> None:
    assert PRESETS["seed"].units == 1024 and PRESETS["seed"].tokenizer == "word"
    assert PRESETS["small"].tokenizer == "char" and PRESETS["small"].vocab_size <= 256
    model = build_text_model(PRESETS["tiny"])
    assert [layer.name for layer in model.layers[1:]] == ["embedding", "lstm", "head"]
    assert model.output_shape == (None, None, PRESETS["tiny"].vocab_size)


def test_one_epoch_of_training_learns(trained, char_tokenizer, windows) -> None:
    _, history = trained
    loss, val_loss = history.history["loss"][0], history.history["val_loss"][0]
    uniform = math.log(char_tokenizer.vocab_size)
    assert math.isfinite(loss) and val_loss < uniform, (loss, val_loss, uniform)
    bpc = bits_per_char(trained[0], char_tokenizer, windows[2], windows[3])
    assert bpc == pytest.approx(val_loss / math.log(2), rel=1e-3)
    assert metric_name(char_tokenizer) == "bits_per_char"


def test_same_seed_same_tokens(generator, char_tokenizer) -> None:
    prompt = char_tokenizer.encode("The ")
    runs = [generator.generate([prompt], [40], [0.3], [None], [7])[0] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 40
    hot = [generator.generate([prompt], [40], [1.5], [None], [s])[0] for s in (1, 2)]
    assert hot[0] != hot[1]


def test_batched_equals_one_at_a_time(generator, char_tokenizer) -> None:
    prompts = [char_tokenizer.encode(p) for p in PROMPTS]
    cases = [  # (max_tokens, temperature, top_k) per row
        [(30, 1.0, None), (5, 0.7, 3), (16, 1.3, None), (30, 0.0, None), (12, 1.0, 10)],
        [(16, 0.8, None), (16, 1.0, 5), (3, 1.0, None)],
    ]
    same = total = 0
    for seed_base, case in enumerate(cases):
        rows = list(zip(prompts, case, strict=False))
        seeds = [100 * seed_base + i for i in range(len(rows))]
        batched = generator.generate(
            [p for p, _ in rows],
            [c[0] for _, c in rows],
            [c[1] for _, c in rows],
            [c[2] for _, c in rows],
            seeds,
        )
        for (prompt, (n, temp, k)), seed, got in zip(rows, seeds, batched, strict=True):
            alone = generator.generate([prompt], [n], [temp], [k], [seed])[0]
            assert len(got) == len(alone) == n
            same += sum(a == b for a, b in zip(got, alone, strict=True))
            total += n
    assert same / total >= 0.999, f"token agreement {same}/{total} = {same / total:.4f}"


def test_top1_matches_full_model_argmax(trained, generator, char_tokenizer) -> None:
    model = trained[0]
    prompt = char_tokenizer.encode("Python is")
    n = 20
    width = len(prompt) + n
    seq = list(prompt)
    for _ in range(n):  # reference: re-run the whole sequence through the trained model
        padded = np.zeros((1, width), np.int32)
        padded[0, : len(seq)] = seq
        logits = np.asarray(model.predict_on_batch(padded))[0, len(seq) - 1]
        seq.append(int(np.argmax(logits)))
    top1 = generator.generate([prompt], [n], [1.0], [1], [3])[0]
    greedy = generator.generate([prompt], [n], [0.0], [None], [4])[0]
    assert top1 == greedy == seq[len(prompt) :]


def test_long_prompt_returns_exactly_max_tokens(generator, corpus, char_tokenizer) -> None:
    prompt = char_tokenizer.encode(corpus[:150])  # longer than the training seq_len
    for n in (0, 1, 9):
        assert len(generator.generate([prompt], [n], [1.0], [None], [0])[0]) == n


def test_chunked_decoding_and_late_rows_match_one_call(generator, char_tokenizer) -> None:
    a, b = char_tokenizer.encode("The "), char_tokenizer.encode("import os")
    want_a = generator.generate([a], [25], [1.0], [None], [11])[0]
    want_b = generator.generate([b], [10], [0.9], [4], [12])[0]
    state = generator.init_state([a], [25], [1.0], [None], [11])
    state = generator.decode_chunk(state, 7)
    assert generator.finished_rows(state) == [] and generator.free_slots(state) == []
    state = generator.grow_rows(state, 2)
    assert generator.free_slots(state) == [1]
    generator.add_row(state, 1, b, 10, 0.9, 4, 12)  # joins mid-flight
    done: dict[int, list[int]] = {}
    for _ in range(20):
        state = generator.decode_chunk(state, 5)
        for slot in generator.finished_rows(state):
            done[slot] = generator.release_row(state, slot)
    assert done == {0: want_a, 1: want_b}


def test_generate_text_reports_token_counts(generator) -> None:
    out = generator.generate_text("The ", max_tokens=12, temperature=0.5, top_k=None, seed=1)
    assert out["prompt_tokens"] == 4 and out["completion_tokens"] == 12
    assert isinstance(out["text"], str) and len(out["text"]) == 12


def test_sampler_is_inverse_cdf_with_top_k() -> None:
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]] * 4, np.float32))
    u = np.array([0.0, 0.15, 0.55, 0.999], np.float32)
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.int32)
    picked = np.asarray(sample_from_logits(logits, ones, zeros, u))
    np.testing.assert_array_equal(picked, [0, 1, 2, 3])  # cdf = 0.1, 0.3, 0.6, 1.0
    top2 = np.asarray(sample_from_logits(logits, ones, np.full(4, 2, np.int32), u))
    np.testing.assert_array_equal(top2, [2, 2, 3, 3])  # renormalised over {2, 3}: cdf 3/7, 1
    top1 = np.asarray(sample_from_logits(logits, ones, np.ones(4, np.int32), u))
    np.testing.assert_array_equal(top1, [3, 3, 3, 3])


def test_uniforms_are_a_pure_function_of_the_seed() -> None:
    a, b = uniforms_for_seed(5, 10), uniforms_for_seed(5, 4)
    np.testing.assert_array_equal(a[:4], b)
    assert a.dtype == np.float32 and ((a >= 0) & (a < 1)).all()
    assert not np.array_equal(a, uniforms_for_seed(6, 10))


def test_generator_rejects_softmax_head(char_tokenizer) -> None:
    import keras

    model = build_text_model(PRESETS["tiny"])
    bad = keras.Sequential(
        [
            model.get_layer("embedding"),
            model.get_layer("lstm"),
            keras.layers.Dense(PRESETS["tiny"].vocab_size, activation="softmax", name="head"),
        ]
    )
    with pytest.raises(ValueError):
        TextGenerator(bad, char_tokenizer)


def test_requests_in_one_bucket_reuse_the_compiled_loop(generator, char_tokenizer) -> None:
    generator.generate([[5, 6, 7]], [4], [1.0], [None], [0])
    before = generator.trace_count
    for length, n, k in [(1, 16, None), (9, 3, 2), (16, 9, None)]:
        prompt = char_tokenizer.encode("abcdefghijklmnop"[:length])
        assert len(generator.generate([prompt], [n], [0.8], [k], [length])[0]) == n
    assert generator.trace_count == before


def test_window_slices_go_round_the_windows_a_slice_per_epoch() -> None:
    x = np.arange(10)[:, None]
    slices = WindowSlices(x, x + 100, batch_size=2, windows=4, start_epoch=0)
    assert len(slices) == 2
    epochs = []
    for _ in range(5):  # 5 epochs of 4 windows: twice round the 10 windows
        seen = [int(v) for step in range(len(slices)) for v in slices[step][0][:, 0]]
        assert [int(v) for step in range(len(slices)) for v in slices[step][1][:, 0]] == [
            v + 100 for v in seen
        ]
        epochs.append(seen)
        slices.on_epoch_end()
    flat = [v for seen in epochs for v in seen]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    resumed = WindowSlices(x, x + 100, batch_size=2, windows=4, start_epoch=3)
    assert [int(v) for step in range(2) for v in resumed[step][0][:, 0]] == epochs[3]
