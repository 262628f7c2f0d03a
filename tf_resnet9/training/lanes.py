"""Lanes: the runs one compiled program trains. `Lanes` is what the epoch loop
(`tf_resnet9.training.loop`) and evaluation drive: one run's `CompiledSteps` (one lane), or
`SeedSteps`, several seeds trained together.

Several seeds together are K independent runs (their own initialisation, shuffles and
augmentations) in one compiled program, by mapping the training steps over a stacked state
(`backends.vmap`, JAX only; over several devices inside `jax.shard_map`). `SeedSteps` wraps
each seed's `CompiledSteps` (its lane) so that the loop sees one object whose state and
metrics carry a leading seed axis, and `SeedInput` stacks the seeds' training inputs the
same way. The loop unstacks the metrics per lane and keeps each seed's records, evaluation
and callbacks apart. On several devices the seed axis is split over them
(`backends.seed_parallel`): each device trains whole runs, with no communication.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import keras
from keras import ops

from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.data.inputs import Batches, DeviceInput
from tf_resnet9.training.steps import CompiledSteps, placed_call


class Lanes(Protocol):
    """Compiled steps that train one run or several at once, each a lane.

    A state or the metrics of a call hold every lane's, stacked on a leading axis where
    there are several (`stack`, `unstack`); each lane's own steps (its model, optimizer and
    variables) are `lanes`.
    """

    lanes: tuple[CompiledSteps, ...]
    placement: object  # where the arrays live (`tf_resnet9.backends.placement`)

    def train_fn(self, batches):
        """`fn(state, position, chunk) -> (state, CallMetrics)` (`CompiledSteps.train_fn`);
        a position's learning rates stacked per lane where there are several."""

    def evaluate(self, state, images, labels, weights):
        """The `EvalMetrics` of one batch, per lane stacked where there are several."""

    def initial_state(self):
        """The lanes' state from their variables as they are now."""

    def unstack(self, tree) -> list:
        """A state or metrics of the compiled calls, per lane."""

    def stack(self, trees: list):
        """The compiled calls' state (or learning rates) from each lane's: `unstack`'s
        inverse, placed where the calls read it."""

    def finish(self, state) -> None:
        """Leaves each lane's part of `state` in its model's variables."""

    def keep_evaluated_weights(self) -> None:
        """Puts what evaluation used (a moving average, where there is one) into each
        lane's model, so that the saved model is the one whose accuracy was reported."""

    def run_discarding_updates(self, step_fn, *args):
        """Calls step_fn(state, *args) and leaves the state as it was (to compile it)."""


@dataclasses.dataclass(frozen=True)
class SeedBatches:
    """The batches of a `SeedInput`: each lane takes its step's batch out of its slice of
    the chunk with `inner`; the compiled steps key their program on this."""

    inner: Batches

    @property
    def in_axes(self) -> tuple:
        """Per array of a chunk: None where every seed shares it, else 0 (stacked)."""
        return tuple(None if shared else 0 for shared in self.inner.shared)


class SeedInput:
    """The training inputs of several seeds as one: per compiled call, each input's chunk,
    the parts that differ per seed (the shuffle, the augmentations' seeds) stacked on a
    leading seed axis, the shared ones (the padded training set) passed once.

    Args:
        inputs: One `DeviceInput` per seed, all of one training set and batch size.
    """

    def __init__(self, inputs: Sequence[DeviceInput]):
        first = inputs[0]
        self.inputs = tuple(inputs)
        self.batch_size, self.steps = first.batch_size, first.steps
        self.steps_per_call = first.steps_per_call
        self.batches = SeedBatches(first.batches)

    @classmethod
    def of_seeds(cls, first: DeviceInput, seeds: Sequence[int]) -> SeedInput:
        """`first` and its copies drawing from each of `seeds` (the set placed once)."""
        return cls([first.reseeded(seed) for seed in seeds])

    def epoch(self, number: int, steps: int | None = None):
        for chunks in zip(*(train_input.epoch(number, steps) for train_input in self.inputs)):
            yield tuple(
                parts[0] if axis is None else ops.stack(parts)
                for axis, parts in zip(self.batches.in_axes, zip(*chunks))
            )


class SeedSteps:
    """Several seeds' `CompiledSteps` trained in one compiled program.

    The state is every lane's state stacked on a leading axis; `train_fn` maps the first
    lane's pure training function over it (the lanes differ only in their values: same
    model, optimizer and settings), and `evaluate` its evaluation, so that one call
    evaluates every seed. `finish` leaves each lane's state in its own model, so every
    seed's model, optimizer and checkpoint are a run's own.

    Args:
        lanes: Each seed's steps, built as a run of that seed builds them (on one device).
        jit: Compile with XLA (as the lanes were told).
        placement: Where the stacked arrays live: one device, or the seeds split over
            several (`backends.seed_parallel`).
    """

    def __init__(self, lanes: Sequence[CompiledSteps], jit: bool, placement=None):
        self.lanes = tuple(lanes)
        self.placement = placement or SingleDevice()
        self._jit = jit
        self._train_fns = {}
        # The state mapped, the evaluation batch (images, labels, weights) shared.
        mapped = self.placement.map_seeds(self.lanes[0].evaluation_program, (0, None, None, None))
        self.evaluate = self.placement.compile(mapped, jit)

    def train_fn(self, batches: SeedBatches):
        """`fn(state, position, chunk) -> (state, CallMetrics)`, the state, the learning
        rates, the chunk and the metrics with a leading seed axis (as
        `CompiledSteps.train_fn`, for a `SeedInput`)."""
        if batches not in self._train_fns:
            train = self.lanes[0].train_program(batches.inner)
            # The state and each lane's learning rates mapped; the step's index shared.
            mapped = self.placement.map_seeds(train, (0, (None, 0), batches.in_axes))
            compiled = self.placement.compile(mapped, self._jit, donate=True)
            where = self.placement
            puts = [where.put if axis is None else where.put_stacked for axis in batches.in_axes]

            def place(position, chunk):
                first_step, learning_rates = position
                placed = tuple(put(array) for put, array in zip(puts, chunk))
                return (where.put(first_step), where.put_stacked(learning_rates)), placed

            self._train_fns[batches] = placed_call(compiled, place)
        return self._train_fns[batches]

    def unstack(self, tree) -> list:
        return [keras.tree.map_structure(lambda x, k=k: x[k], tree) for k in range(len(self.lanes))]

    def stack(self, trees: list):
        stacked = keras.tree.map_structure(lambda *values: ops.stack(values), *trees)
        return keras.tree.map_structure(self.placement.put_stacked, stacked)

    def initial_state(self):
        return self.stack([lane.initial_state() for lane in self.lanes])

    def finish(self, state) -> None:
        for lane, lane_state in zip(self.lanes, self.unstack(state)):
            lane.finish(lane_state)

    def keep_evaluated_weights(self) -> None:
        for lane in self.lanes:
            lane.keep_evaluated_weights()

    def run_discarding_updates(self, step_fn, *args):
        # A fresh stack of the variables' values: what step_fn consumes is nobody's.
        return step_fn(self.initial_state(), *args)
