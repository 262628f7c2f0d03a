"""airbench's lookahead: every few updates, an average of the whole network state moves
towards the weights, and the weights are reset to it; at the end they become the average.

Pure functions of (update count, averages, values), for the training step to call after
each update (`lookahead_update`) and once after the last (`lookahead_finish`). They work
on any list of arrays: the Keras backend's tensors inside a compiled step, or NumPy.
"""

from __future__ import annotations

from keras import ops

EVERY = 5  # updates between moves
BASE_DECAY = 0.95**5  # the decay per update of airbench's underlying EMA, over EVERY updates


def lookahead_decay(step, total_steps: int, base: float = BASE_DECAY):
    """The average's decay after update `step` (1-based) of `total_steps`:
    base (step / total_steps)^3, so the average barely lags early and holds most of its
    past late (0.95^5 = 0.774 at the end)."""
    fraction = ops.cast(step, "float32") / float(total_steps)
    return base * fraction**3


def lookahead_update(
    step, total_steps: int, averages: list, values: list, every: int = EVERY
) -> tuple[list, list]:
    """The averages and values after update `step` (1-based; a Python int or a scalar
    tensor).

    Where step is a multiple of `every`, with decay = `lookahead_decay(step, total_steps)`:

        average = decay average + (1 - decay) value     (every float variable)
        value = average

    else both are returned as they are. `values` is every float variable of the model,
    trainable or not (BatchNorm's statistics and the frozen whitening kernel included;
    never the optimizer's momentum), `averages` the same list's averages, which start
    as the freshly initialised model (airbench makes them before it computes the
    whitening kernel). Written as PyTorch's `lerp` computes it for these decays
    (value + decay (average - value)), so that float32 results agree to the last bit
    more often.
    """
    if len(averages) != len(values):
        raise ValueError(
            f"averages ({len(averages)}) and values ({len(values)}) are invalid: expected "
            "one average per value."
        )
    due = ops.equal(ops.mod(step, every), 0)
    decay = lookahead_decay(step, total_steps)
    new_averages, new_values = [], []
    for average, value in zip(averages, values):
        value = ops.cast(value, average.dtype)
        moved = value + ops.cast(decay, average.dtype) * (average - value)
        new_averages.append(ops.where(due, moved, average))
        new_values.append(ops.where(due, moved, value))
    return new_averages, new_values


def lookahead_finish(averages: list, values: list) -> list:
    """The values after the last update (and its `lookahead_update`): the averages (a move
    with decay 1)."""
    if len(averages) != len(values):
        raise ValueError(
            f"averages ({len(averages)}) and values ({len(values)}) are invalid: expected "
            "one average per value."
        )
    return [ops.cast(average, value.dtype) for average, value in zip(averages, values)]
