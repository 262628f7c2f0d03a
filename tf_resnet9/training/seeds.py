"""Several seeds trained together: K independent runs (their own initialisation, shuffles
and augmentations) in one compiled program, by mapping the training steps over a stacked
state (`backends.vmap`, JAX only; over several devices inside `jax.shard_map`).

`SeedSteps` wraps each seed's `CompiledSteps` (its "lane") so that the epoch loop
(`tf_resnet9.training.loop`) sees one object whose state and metrics carry a leading seed
axis, and `SeedInput` stacks the seeds' training inputs the same way. The loop unstacks the
metrics per lane and keeps each seed's records, evaluation and callbacks apart. On several
devices the seed axis is split over them (`backends.seed_parallel`): each device trains
whole runs, with no communication.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
from keras import ops

from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.data.inputs import Batches, DeviceInput
from tf_resnet9.training.steps import CompiledSteps, placed_call


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

    def epoch(self, number: int):
        for chunks in zip(*(train_input.epoch(number) for train_input in self.inputs)):
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
        seeds: Each lane's seed, for its training input (`SeedInput.of_seeds`).
        placement: Where the stacked arrays live: one device, or the seeds split over
            several (`backends.seed_parallel`).
    """

    def __init__(
        self, lanes: Sequence[CompiledSteps], jit: bool, seeds: Sequence[int] = (), placement=None
    ):
        self.lanes, self.seeds = tuple(lanes), tuple(seeds)
        self.placement = placement or SingleDevice()
        self._jit = jit
        self._train_fns = {}
        # The state mapped, the evaluation batch (images, labels, weights) shared.
        mapped = self.placement.map_seeds(self.lanes[0].evaluation_program, (0, None, None, None))
        self.evaluate = self.placement.compile(mapped, jit)

    def train_fn(self, batches: SeedBatches):
        """`fn(state, first_step, chunk) -> (state, CallMetrics)`, state, chunk and metrics
        with a leading seed axis (as `CompiledSteps.train_fn`, for a `SeedInput`)."""
        if batches not in self._train_fns:
            train = self.lanes[0].train_program(batches.inner)
            mapped = self.placement.map_seeds(train, (0, None, batches.in_axes))
            compiled = self.placement.compile(mapped, self._jit, donate=True)
            where = self.placement
            puts = [where.put if axis is None else where.put_stacked for axis in batches.in_axes]

            def place(chunk):
                return tuple(put(array) for put, array in zip(puts, chunk))

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
