"""Stateful, chunked, on-device text decoding for the Embedding-LSTM-Dense model.

The whole decode loop is one compiled call (``keras.ops.while_loop`` inside a
``keras.Model`` invoked through ``predict_on_batch``, i.e. ``jax.jit`` or ``tf.function``),
and the LSTM state is carried from step to step so the prefix is never re-run.
Every row samples with its own host-drawn uniforms, so its tokens do not depend on
which other rows share the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from shared.models.tokenizers import PAD_ID, Tokenizer

# Arrays the compiled loop updates; everything else in the state is read-only inside it.
LOOP_KEYS = ("h", "c", "last", "pos", "n_gen", "out")
CONST_KEYS = ("prompt", "prompt_len", "max_tokens", "temperature", "top_k", "uniforms")
# Smallest padded prompt / output lengths, so short requests share one compiled shape.
MIN_LEN_BUCKET = 16


def bucket(n: int, minimum: int = 1) -> int:
    """Return the smallest power of two that is at least max(n, minimum)."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def uniforms_for_seed(seed: int, n: int) -> np.ndarray:
    """Return the n uniforms in [0, 1) that drive sampling for one request's seed."""
    return np.random.default_rng(int(seed)).random(int(n), dtype=np.float32)


def _top_k_filter(scaled, top_k):
    """Return scaled with entries below each row's k-th largest set to -inf (k = 0: keep all)."""
    # A threshold rather than indices: ties with the k-th value are kept (measure-zero in floats).
    vocab = scaled.shape[-1]
    ascending = ops.sort(scaled, axis=-1)
    kth = ops.expand_dims(ops.clip(vocab - top_k, 0, vocab - 1), -1)
    threshold = ops.take_along_axis(ascending, kth, axis=-1)
    threshold = ops.where(ops.expand_dims(top_k > 0, -1), threshold, float("-inf"))
    return ops.where(scaled >= threshold, scaled, float("-inf"))


def sample_from_logits(logits, temperature, top_k, u):
    """Pick one token per row by inverse-CDF sampling of softmax(logits / T) over its top k."""
    vocab = logits.shape[-1]
    scaled = logits / ops.expand_dims(ops.maximum(temperature, 1e-6), -1)
    # The sort dominates a step's cost on CPU, so skip it when no row asks for top-k.
    masked = ops.cond(ops.any(top_k > 0), lambda: _top_k_filter(scaled, top_k), lambda: scaled)
    probs = ops.softmax(masked, axis=-1)
    cdf = ops.cumsum(probs, axis=-1)
    # Scaling u by the total keeps the draw inside the support despite rounding in the sum.
    target = ops.expand_dims(u, -1) * cdf[:, -1:]
    index = ops.sum(ops.cast(cdf <= target, "int32"), axis=-1)
    positive = ops.cast(probs > 0, "int32")
    last_positive = vocab - 1 - ops.cast(ops.argmax(ops.flip(positive, axis=-1), axis=-1), "int32")
    return ops.minimum(index, last_positive)


class _DecodeLoop(keras.Model):
    """Run up to n_steps decode steps for every row inside one while_loop."""

    def __init__(self, embedding: keras.layers.Layer, cell: keras.layers.Layer, head):
        super().__init__(name="decode_loop")
        self.embedding = embedding
        self.cell = cell
        self.head = head
        self.traces = 0  # Python runs call() only while tracing, so this counts compiles
        self.built = True

    def call(self, inputs: dict) -> dict:
        """Advance every unfinished row by up to n_steps tokens."""
        self.traces += 1
        n_steps = ops.cast(inputs["n_steps"][0], "int32")
        const = {k: inputs[k] for k in CONST_KEYS}
        max_tokens = const["max_tokens"]

        def cond(i, h, c, last, pos, n_gen, out):
            return ops.logical_and(i < n_steps, ops.any(n_gen < max_tokens))

        def body(i, h, c, last, pos, n_gen, out):
            return (i + 1, *self._step(const, h, c, last, pos, n_gen, out))

        start = (ops.convert_to_tensor(0, "int32"), *(inputs[k] for k in LOOP_KEYS))
        result = ops.while_loop(cond, body, start)
        return dict(zip(LOOP_KEYS, result[1:], strict=True))

    def _step(self, const: dict, h, c, last, pos, n_gen, out):
        """Feed one token per active row and sample where the prompt is consumed."""
        prompt, prompt_len = const["prompt"], const["prompt_len"]
        active = n_gen < const["max_tokens"]
        p_idx = ops.minimum(pos, ops.shape(prompt)[1] - 1)
        prompt_tok = ops.take_along_axis(prompt, ops.expand_dims(p_idx, -1), axis=1)[:, 0]
        tok_in = ops.where(pos < prompt_len, prompt_tok, last)
        _, (h_new, c_new) = self.cell(self.embedding(tok_in), [h, c], training=False)
        logits = ops.cast(self.head(h_new), "float32")
        width = ops.shape(out)[1]
        g_idx = ops.minimum(n_gen, width - 1)
        u = ops.take_along_axis(const["uniforms"], ops.expand_dims(g_idx, -1), axis=1)[:, 0]
        tok = sample_from_logits(logits, const["temperature"], const["top_k"], u)
        sample_now = ops.logical_and(active, pos >= prompt_len - 1)
        hit = ops.expand_dims(ops.arange(width, dtype="int32"), 0) == ops.expand_dims(n_gen, -1)
        write = ops.logical_and(hit, ops.expand_dims(sample_now, -1))
        out = ops.where(write, ops.expand_dims(tok, -1), out)
        keep = ops.expand_dims(active, -1)
        h = ops.where(keep, h_new, h)
        c = ops.where(keep, c_new, c)
        last = ops.where(sample_now, tok, last)
        n_gen = n_gen + ops.cast(sample_now, "int32")
        pos = pos + ops.cast(active, "int32")
        return h, c, last, pos, n_gen, out


@dataclass
class DecodeState:
    """Per-row decode arrays plus which slots hold a request (host bookkeeping)."""

    arrays: dict[str, np.ndarray]
    live: np.ndarray

    @property
    def rows(self) -> int:
        """Return the number of slots (the padded batch size)."""
        return int(self.live.shape[0])


def _copy_layers(model: keras.Model) -> tuple[keras.layers.Layer, ...]:
    """Return fresh embedding, LSTM cell and head layers holding the model's weights."""
    embedding, lstm, head = (model.get_layer(n) for n in ("embedding", "lstm", "head"))
    if head.activation is not keras.activations.linear:
        raise ValueError("the 'head' layer must output logits (linear activation)")
    cell = lstm.cell
    # Built from attributes rather than get_config, which imports TensorFlow even on JAX;
    # zero initializers skip costly defaults (orthogonal runs a QR) as weights are copied next.
    zeros = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
    copies = (
        keras.layers.Embedding(
            embedding.input_dim, embedding.output_dim, embeddings_initializer="zeros"
        ),
        keras.layers.LSTMCell(
            cell.units,
            activation=cell.activation,
            recurrent_activation=cell.recurrent_activation,
            use_bias=cell.use_bias,
            unit_forget_bias=False,
            recurrent_initializer="zeros",
            implementation=cell.implementation,
            **zeros,
        ),
        keras.layers.Dense(head.units, use_bias=head.use_bias, **zeros),
    )
    shapes = ((None,), (None, embedding.output_dim), (None, cell.units))
    for copy, source, shape in zip(copies, (embedding, cell, head), shapes, strict=True):
        copy.build(shape)
        copy.set_weights(source.get_weights())
    return copies


class TextGenerator:
    """Sample continuations from a trained text model with stateful, chunked decoding."""

    def __init__(self, model: keras.Model, tokenizer: Tokenizer | None = None):
        embedding, cell, head = _copy_layers(model)
        self.units = int(cell.units)
        self.vocab_size = int(embedding.input_dim)
        self.tokenizer = tokenizer
        self._loop = _DecodeLoop(embedding, cell, head)

    @property
    def trace_count(self) -> int:
        """Return how many times the decode loop has been traced (compiled) so far."""
        return int(self._loop.traces)

    def empty_state(self, rows: int, prompt_capacity: int = 1, new_capacity: int = 1):
        """Return a state with bucket(rows) free slots and bucketed length capacities."""
        b = bucket(rows)
        p = bucket(prompt_capacity, MIN_LEN_BUCKET)
        m = bucket(new_capacity, MIN_LEN_BUCKET)
        i32 = np.int32
        arrays = {
            "h": np.zeros((b, self.units), np.float32),
            "c": np.zeros((b, self.units), np.float32),
            "last": np.zeros(b, i32),
            "pos": np.zeros(b, i32),
            "n_gen": np.zeros(b, i32),
            "out": np.zeros((b, m), i32),
            "prompt": np.zeros((b, p), i32),
            "prompt_len": np.zeros(b, i32),
            "max_tokens": np.zeros(b, i32),
            "temperature": np.ones(b, np.float32),
            "top_k": np.zeros(b, i32),
            "uniforms": np.zeros((b, m), np.float32),
        }
        return DecodeState(arrays=arrays, live=np.zeros(b, bool))

    def init_state(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: Sequence[int],
        temperature: Sequence[float],
        top_k: Sequence[int | None],
        seeds: Sequence[int],
        rows: int | None = None,
    ) -> DecodeState:
        """Return a state holding these requests in slots 0..n-1 (extra slots stay free)."""
        n = len(prompts)
        if not n == len(max_tokens) == len(temperature) == len(top_k) == len(seeds):
            raise ValueError("prompts, max_tokens, temperature, top_k and seeds differ in length")
        longest = max((len(p) for p in prompts), default=1)
        state = self.empty_state(max(rows or n, n), longest, max(max_tokens, default=1))
        for slot in range(n):
            self.add_row(
                state,
                slot,
                prompts[slot],
                max_tokens[slot],
                temperature[slot],
                top_k[slot],
                seeds[slot],
            )
        return state

    def add_row(
        self,
        state: DecodeState,
        slot: int,
        prompt: Sequence[int],
        max_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
    ) -> DecodeState:
        """Place one request in a free slot (growing length buckets if needed), in place."""
        if state.live[slot]:
            raise ValueError(f"slot {slot} is busy")
        ids = [int(t) for t in prompt] or [PAD_ID]  # an empty prompt starts from <pad>
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError("prompt token id out of range")
        _grow(state, len(ids), int(max_tokens))
        a = state.arrays
        for key in LOOP_KEYS + CONST_KEYS:
            a[key][slot] = 0
        a["prompt"][slot, : len(ids)] = ids
        a["prompt_len"][slot] = len(ids)
        n_new = max(int(max_tokens), 0)
        a["max_tokens"][slot] = n_new
        greedy = temperature is None or temperature <= 0
        # Temperature <= 0 means greedy, which is exactly top-1 sampling.
        a["temperature"][slot] = 1.0 if greedy else float(temperature)
        a["top_k"][slot] = 1 if greedy else max(int(top_k or 0), 0)
        a["uniforms"][slot, :n_new] = uniforms_for_seed(seed, n_new)
        state.live[slot] = True
        return state

    def grow_rows(self, state: DecodeState, rows: int) -> DecodeState:
        """Return state padded with free slots to bucket(rows) slots (never shrinks)."""
        b = bucket(rows)
        if b <= state.rows:
            return state
        pad = b - state.rows
        arrays = {
            k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in state.arrays.items()
        }
        arrays["temperature"][-pad:] = 1.0
        return DecodeState(arrays=arrays, live=np.pad(state.live, (0, pad)))

    def decode_chunk(self, state: DecodeState, n_steps: int) -> DecodeState:
        """Run up to n_steps steps for every unfinished row in one compiled call.

        The result shares its read-only arrays with the input, so treat the input as consumed.
        """
        inputs = dict(state.arrays)
        inputs["n_steps"] = np.asarray([n_steps], np.int32)
        result = self._loop.predict_on_batch(inputs)
        arrays = dict(state.arrays)
        arrays.update({k: np.array(result[k]) for k in LOOP_KEYS})  # writable copies
        return DecodeState(arrays=arrays, live=state.live.copy())

    def finished_rows(self, state: DecodeState) -> list[int]:
        """Return the live slots whose requests have all their tokens."""
        a = state.arrays
        return [int(i) for i in np.flatnonzero(state.live & (a["n_gen"] >= a["max_tokens"]))]

    def free_slots(self, state: DecodeState) -> list[int]:
        """Return the slots that hold no request."""
        return [int(i) for i in np.flatnonzero(~state.live)]

    def row_tokens(self, state: DecodeState, slot: int) -> list[int]:
        """Return the tokens generated so far in a slot."""
        n = int(state.arrays["n_gen"][slot])
        return state.arrays["out"][slot, :n].tolist()

    def release_row(self, state: DecodeState, slot: int) -> list[int]:
        """Free a slot (in place) and return the tokens it generated."""
        tokens = self.row_tokens(state, slot)
        _free(state, slot)
        return tokens

    def park_row(self, state: DecodeState, slot: int) -> dict[str, np.ndarray]:
        """Free a slot (in place) and return copies of its arrays, for ``resume_row``."""
        # The row's whole decode state is in these arrays: LSTM state, tokens so far, and the
        # uniforms drawn from its seed (indexed by n_gen), so resuming needs nothing else.
        saved = {key: arr[slot].copy() for key, arr in state.arrays.items()}
        _free(state, slot)
        return saved

    def resume_row(self, state: DecodeState, slot: int, saved: dict[str, np.ndarray]) -> None:
        """Put a parked row back into a free slot, in place, to continue where it stopped."""
        if state.live[slot]:
            raise ValueError(f"slot {slot} is busy")
        _grow(state, int(saved["prompt_len"]), int(saved["max_tokens"]))
        for key, arr in state.arrays.items():
            row = saved[key]
            if arr.ndim == 2:
                # Length buckets may differ from the parked ones; the row's data lies within
                # its prompt_len and max_tokens, which _grow has made room for; the rest is 0.
                row = _pad_cols(row[None, : arr.shape[1]], arr.shape[1])[0]
            arr[slot] = row
        state.live[slot] = True

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: Sequence[int],
        temperature: Sequence[float],
        top_k: Sequence[int | None],
        seeds: Sequence[int],
    ) -> list[list[int]]:
        """Return the generated ids (prompt excluded) of each request, decoded in one call."""
        if not prompts:
            return []
        state = self.init_state(prompts, max_tokens, temperature, top_k, seeds)
        a = state.arrays
        steps = int(np.max(np.maximum(a["prompt_len"], 1) + a["max_tokens"]))
        state = self.decode_chunk(state, steps)
        return [self.row_tokens(state, i) for i in range(len(prompts))]

    def generate_text(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        tokenizer: Tokenizer | None = None,
    ) -> dict:
        """Return {text, prompt_tokens, completion_tokens} for one text prompt."""
        tok = tokenizer or self.tokenizer
        if tok is None:
            raise ValueError("generate_text needs a tokenizer")
        ids = tok.encode(prompt)
        out = self.generate([ids], [max_tokens], [temperature], [top_k], [seed])[0]
        return {"text": tok.decode(out), "prompt_tokens": len(ids), "completion_tokens": len(out)}


def _free(state: DecodeState, slot: int) -> None:
    """Mark a slot free (in place); a max_tokens of 0 keeps the loop from advancing it."""
    state.arrays["max_tokens"][slot] = 0
    state.live[slot] = False


def _grow(state: DecodeState, prompt_len: int, max_tokens: int) -> None:
    """Pad the prompt and output buffers (in place) to buckets that fit a new request."""
    a = state.arrays
    p = bucket(prompt_len, MIN_LEN_BUCKET)
    m = bucket(max_tokens, MIN_LEN_BUCKET)
    if p > a["prompt"].shape[1]:
        a["prompt"] = _pad_cols(a["prompt"], p)
    if m > a["out"].shape[1]:
        a["out"] = _pad_cols(a["out"], m)
        a["uniforms"] = _pad_cols(a["uniforms"], m)


def _pad_cols(x: np.ndarray, width: int) -> np.ndarray:
    """Return x right-padded with zeros to width columns."""
    return np.pad(x, ((0, 0), (0, width - x.shape[1])))
