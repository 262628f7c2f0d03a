"""Compiled training and evaluation steps, written once for every Keras backend.

The forward pass and loss are pure (`Model.stateless_call`); `tf_resnet9.backends` supplies
the gradient, the compiler (XLA) and where the weights live between calls. Several steps run
in one compiled call (`keras.ops.fori_loop`), so the host neither waits for the device nor
dispatches work between steps. Where a step's batch comes from is the training input's
business (`tf_resnet9.data.inputs`): the steps call its `batches` inside the compiled call.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.data import augment
from tf_resnet9.data.inputs import PreparedBatches
from tf_resnet9.training import lookahead, tta


class CallMetrics(NamedTuple):
    """Totals over the steps of one call."""

    loss_sum: object  # float32: sum of the steps' mean losses
    correct: object  # int32: correct predictions
    first_nonfinite: object  # int32: index of the first step with a NaN/inf loss, else -1
    grad_norms: object  # float32 (S, groups): each step's gradient norm per layer group


class EvalMetrics(NamedTuple):
    """Sums over one evaluation batch, padding excluded."""

    loss_sum: object  # float32
    confusion: object  # float32 (classes, classes): rows the true class, columns predicted
    top5_correct: object  # float32: images whose class is among the 5 largest logits


def layer_group(variable_path: str) -> str:
    """The layer group a variable belongs to: its layer name up to the first "_" ("prep",
    "layer1", ..., "linear" in ResNet9), for per-group gradient norms."""
    return variable_path.split("/")[0].split("_")[0]


class CompiledSteps:
    """Trains and evaluates a classifier with the recipe's loss, compiled: one run, one
    lane of `tf_resnet9.training.lanes.Lanes`.

    The step functions take and return a `state` whose contents depend on the backend;
    callers pass it along, from `initial_state()` (the variables' values) to the next call,
    read it by name with `arrays`, and call `finish` to leave the last one in the model's
    variables. The learning rate of each step is an input of the call (`train_fn`), unless
    the optimizer follows a schedule of its own (`train_on_batches`).

    Args:
        model: Maps normalised float images (B, 32, 32, 3) to logits.
        optimizer: A Keras optimizer (a `LossScaleOptimizer` for float16).
        jit: Compile with XLA.
        grad_norms: Compute each step's gradient norm per layer group (for logging); with
            False the norms have no columns (`grad_groups` is empty).
        label_smoothing: Train on targets (1 - s) one-hot + s / classes (the training
            loss reported is this loss; the evaluation's is plain cross-entropy).
        tta_level: Evaluate on the mean logits of views of each image
            (`tf_resnet9.training.tta.tta_logits`): 0 the image alone, 1 and its mirror
            image, 2 airbench's six views.
        ema: (momentum, every) for an exponential moving average of every model variable
            (weights and BatchNorm statistics), which evaluation then uses, starting from
            the initial values: after updates 1, 1 + every, 1 + 2 every, ... of each epoch,
            ema = momentum**every * ema + (1 - momentum**every) * value. That is Page's
            timing: his `update_ema(0.99, update_freq=5)`, made anew each epoch, fires on
            its first call and every 5th after (steps 1, 6, ..., 96 of a 97-step epoch).
            None: no average.
        lookahead: The run's updates, for airbench's lookahead
            (`tf_resnet9.training.lookahead`): after every update, at its schedule, an
            average of every model variable moves towards them and they are set to it; after
            the last they become the average. It starts from the model as built (airbench
            makes it before its whitening kernel is computed). None: none.
        placement: Where the arrays live (`tf_resnet9.backends.placement`): one device
            unless told; build the model and the optimizer in its `scope()`.
        normalization: (mean, std) per channel of the evaluation's normalisation, the
            training input's; None: CIFAR-10's (`tf_resnet9.data.augment.normalize`).
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        jit: bool,
        grad_norms: bool = True,
        label_smoothing: float = 0.0,
        tta_level: int = 0,
        ema: tuple[float, int] | None = None,
        lookahead: int | None = None,
        placement=None,
        normalization=None,
    ):
        if ema is not None and lookahead is not None:
            raise ValueError("ema and lookahead are invalid together: one average at a time.")
        self.placement = placement or SingleDevice()
        self.normalization = normalization
        self.model = model
        self.optimizer = optimizer
        self.label_smoothing = label_smoothing
        self.tta_level = tta_level
        self.ema = ema
        self.lookahead = lookahead
        optimizer.build(model.trainable_variables)
        # The average (the EMA's or the lookahead's), kept with the weights between calls.
        kind = "ema" if ema is not None else "lookahead" if lookahead is not None else None
        self.average_variables = _copies(model, kind) if kind else []
        groups = (
            model.trainable_variables,
            model.non_trainable_variables,
            optimizer.variables,
            self.average_variables,
        )
        # Where the count of updates done is among the optimizer's values (the lookahead's
        # clock).
        self._iterations_at = next(
            (i for i, v in enumerate(optimizer.variables) if v is optimizer.iterations), None
        )
        self._state = backends.TrainingState(groups, optimizer)
        # The state's arrays by name, as checkpoints store them (optimizer and extra
        # variables by position too: their paths repeat).
        self.names = [
            *(f"model/{v.path}" for v in groups[0] + groups[1]),
            *(f"optimizer/{i}/{v.path}" for i, v in enumerate(groups[2])),
            *(f"steps/{i}/{v.path}" for i, v in enumerate(groups[3])),
        ]
        self._variables = [v for group in groups for v in group]
        paths = [variable.path for variable in model.trainable_variables] if grad_norms else []
        self.grad_groups = tuple(dict.fromkeys(layer_group(path) for path in paths))
        self._group_of = [self.grad_groups.index(layer_group(path)) for path in paths]
        self._loss_and_grads = backends.value_and_grad(self._loss)
        self._jit = jit
        self._train_fns = {}
        # Where each step is given its learning rate, it replaces the optimizer's own value.
        self._rate_settable = isinstance(optimizer.learning_rate, keras.Variable)
        # Evaluation reads the state the next training call consumes: not donated.
        self.evaluate = self.placement.compile(self._evaluate, jit)

    def train_fn(self, batches):
        """The compiled call that trains on one chunk of a training input:
        `fn(state, position, chunk) -> (state, CallMetrics)`, step i of the chunk on
        `batches(chunk, i)`. `position` is (first_step, learning_rates): the index in its
        epoch (from 0, int32) of the chunk's first step, and each step's learning rate
        (float32, one per step of the chunk; None: the optimizer's own schedule). One
        program per distinct `batches` (`tf_resnet9.data.inputs.Batches`), compiled on its
        first call. `fn.compiled` is the compiled function, which takes positions and
        chunks placed by `fn.place(position, chunk)`, and `fn.program(state, position,
        chunk)` its optimised program as text (XLA's HLO), where the data-parallel tests
        and benchmarks count the all-reduces."""
        if batches not in self._train_fns:
            train = self.train_program(batches)
            compiled = self.placement.compile(train, self._jit, donate=True)
            put = self.placement.put

            def place(position, chunk):
                first_step, learning_rates = position
                if learning_rates is not None:
                    learning_rates = put(learning_rates)
                placed = tuple(put(array, axis) for array, axis in zip(chunk, batches.batch_axes))
                return (first_step, learning_rates), placed

            self._train_fns[batches] = placed_call(compiled, place)
        return self._train_fns[batches]

    def train_program(self, batches):
        """The pure function `train_fn` compiles, `(state, position, chunk) -> (state,
        CallMetrics)`: for `tf_resnet9.training.lanes`, which maps it over several states."""

        def train(state, position, chunk):
            first_step, learning_rates = position
            if learning_rates is not None and not self._rate_settable:
                raise ValueError(
                    "the optimizer follows a learning-rate schedule of its own, and the steps "
                    "were given their rates: build it with a constant learning rate, which "
                    "the steps' rates replace."
                )
            count = batches.count(chunk)
            batch = lambda i: batches(chunk, i)  # noqa: E731
            return self._steps(state, first_step, learning_rates, count, batch)

        return train

    @property
    def evaluation_program(self):
        """The pure function `evaluate` compiles, `(state, images, labels, weights) ->
        EvalMetrics` of one batch: for `tf_resnet9.training.lanes`, which maps it too."""
        return self._evaluate

    # The epoch loop trains "lanes": runs that share the compiled calls, their states and
    # metrics stacked on a leading axis (`tf_resnet9.training.lanes.SeedSteps`). These steps
    # are one run: one lane, nothing stacked.

    @property
    def lanes(self) -> tuple[CompiledSteps, ...]:
        """Each run's own steps (its model, optimizer and variables)."""
        return (self,)

    def unstack(self, tree) -> list:
        """A state or metrics of the compiled calls, per lane."""
        return [tree]

    def stack(self, trees: list):
        """The compiled calls' state from each lane's (`unstack`'s inverse)."""
        (tree,) = trees
        return tree

    def train_on_batches(self, state, images, labels, first_step: int = 0):
        """Steps on batches the caller prepared: float32 images (S, B, 32, 32, 3), normalised
        and augmented, and int32 labels (S, B); `first_step`, the index in its epoch of the
        first; the learning rate the optimizer's own. Returns (state, CallMetrics)."""
        train = self.train_fn(PreparedBatches())
        position = (ops.convert_to_tensor(first_step, "int32"), None)
        return train(state, position, (images, labels))

    def initial_state(self):
        """The state for the first step function call: the variables as they are now."""
        return self._state.initial()

    def finish(self, state) -> None:
        """Leaves `state` in the Keras variables (to save or inspect the model)."""
        self._state.finish(state)

    def model_of(self, state) -> keras.Model:
        """The model, its variables set to `state` (which stays usable)."""
        self.finish(state)
        return self.model

    def arrays(self, state) -> dict[str, object]:
        """The state's arrays by name (`names`), copied to the host: what a checkpoint
        stores. Read them before the state goes into the next training call, which
        consumes it."""
        values = [value for group in self._state.values(state) for value in group]
        return {name: ops.convert_to_numpy(value) for name, value in zip(self.names, values)}

    @property
    def shapes(self) -> dict[str, tuple]:
        """Each array of the state's shape, by name."""
        return {name: tuple(v.shape) for name, v in zip(self.names, self._variables)}

    def restore(self, arrays: dict) -> None:
        """Puts named arrays (a checkpoint's, `arrays`'s) into the variables, which the
        next `initial_state` reads."""
        for name, variable in zip(self.names, self._variables):
            variable.assign(arrays[name])

    def keep_evaluated_weights(self) -> None:
        """Puts the values evaluation uses (the average, with `ema`) into the model's
        variables, so that the saved model is the one whose accuracy was reported."""
        if self.ema is None:
            return  # evaluation uses the variables' own values
        trainable, non_trainable = self.evaluated_values(self._state.initial())
        model_variables = self.model.trainable_variables + self.model.non_trainable_variables
        for variable, value in zip(model_variables, trainable + non_trainable):
            variable.assign(ops.convert_to_numpy(value))

    def run_discarding_updates(self, step_fn, *args):
        """Calls step_fn(state, *args) and leaves the state as it was (to compile step_fn)."""
        return self._state.run_discarding_updates(step_fn, *args)

    def _loss(self, trainable, non_trainable, optimizer_values, images, labels):
        logits, non_trainable = self.model.stateless_call(
            trainable, non_trainable, images, training=True
        )
        loss = ops.mean(cross_entropy(labels, logits, self.label_smoothing))
        to_differentiate = loss
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # float16: scale the loss up so small gradients survive; the update scales back.
            mapping = list(zip(self.optimizer.variables, optimizer_values))
            with keras.StatelessScope(state_mapping=mapping):
                to_differentiate = self.optimizer.scale_loss(loss)
        return to_differentiate, (loss, logits, non_trainable)

    def _step(self, state, step_in_epoch, learning_rate, images, labels):
        trainable, non_trainable, optimizer_values, _ = self._state.values(state)
        (_, (loss, logits, non_trainable)), grads = self._loss_and_grads(
            trainable, non_trainable, optimizer_values, images, labels
        )
        correct = ops.sum(ops.cast(ops.argmax(logits, axis=-1) == labels, "int32"))
        state = self._state.apply(state, grads, non_trainable, learning_rate)
        if self.ema is not None:
            state = self._update_ema(state, step_in_epoch)
        if self.lookahead is not None:
            state = self._move_lookahead(state)
        return state, loss, correct, self._norms(grads)

    def _move_lookahead(self, state):
        """The lookahead after this update: at its schedule, the average moved and the
        model set to it; after the run's last update, the model the average."""
        trainable, non_trainable, optimizer_values, averages = self._state.values(state)
        done = optimizer_values[self._iterations_at]  # this update included
        averages, values = lookahead.lookahead_update(
            done, self.lookahead, averages, trainable + non_trainable
        )
        last = ops.equal(done, self.lookahead)
        finished = lookahead.lookahead_finish(averages, values)
        values = [ops.where(last, end, value) for end, value in zip(finished, values)]
        state = self._state.with_model(state, values[: len(trainable)], values[len(trainable) :])
        return self._state.with_extra(state, averages)

    def _update_ema(self, state, step_in_epoch):
        """The average moved towards the values after this update, at Page's steps."""
        momentum, every = self.ema
        trainable, non_trainable, _, averages = self._state.values(state)
        due = step_in_epoch % every == 0
        rho = momentum**every
        averages = [
            ops.where(due, rho * average + (1.0 - rho) * ops.cast(value, average.dtype), average)
            for average, value in zip(averages, trainable + non_trainable)
        ]
        return self._state.with_extra(state, averages)

    def evaluated_values(self, state) -> tuple[list, list]:
        """(trainable, non-trainable) values evaluation uses: the average, with `ema` (the
        lookahead's average is the model's at the end)."""
        trainable, non_trainable, _, extra = self._state.values(state)
        if self.ema is None:
            return trainable, non_trainable
        return extra[: len(trainable)], extra[len(trainable) :]

    def _norms(self, grads):
        """L2 norm of the gradient of each layer group (of the scaled loss under float16):
        a few reductions per step, next to the convolutions' 2.3 GFLOP per image."""
        if not self.grad_groups:
            return ops.zeros((0,), "float32")
        squares = [ops.zeros((), "float32") for _ in self.grad_groups]
        for group, grad in zip(self._group_of, grads):
            squares[group] = squares[group] + ops.sum(ops.square(ops.cast(grad, "float32")))
        return ops.sqrt(ops.stack(squares))  # (groups,)

    def _steps(self, state, first_step, learning_rates, count: int, batch):
        """`count` steps in one loop; step i trains on `batch(i)` = (images, labels) at
        `learning_rates[i]` (None: the optimizer's own)."""

        def step(i, carry):
            state, totals = carry
            lr = None if learning_rates is None else learning_rates[i]
            state, loss, correct, norms = self._step(state, first_step + i, lr, *batch(i))
            first = ops.where(
                (totals.first_nonfinite < 0) & ~ops.isfinite(loss), i, totals.first_nonfinite
            )
            # The totals keep their dtypes whatever the model computes in (a loop's carry
            # must): a float64 model's loss and 64-bit integer sums are cast back.
            return state, CallMetrics(
                totals.loss_sum + ops.cast(loss, "float32"),
                totals.correct + ops.cast(correct, "int32"),
                first,
                ops.slice_update(totals.grad_norms, (i, 0), norms[None]),
            )

        zero = CallMetrics(
            ops.zeros((), "float32"),
            ops.zeros((), "int32"),
            -ops.ones((), "int32"),
            ops.zeros((count, len(self.grad_groups)), "float32"),
        )
        if count == 1:
            # XLA's CPU backend runs convolutions inside a loop ~70x slower than outside one
            # (measured on ResNet9, TensorFlow and JAX alike): one step needs no loop.
            return step(0, (state, zero))
        return ops.fori_loop(0, count, step, (state, zero))

    def _evaluate(self, state, images, labels, weights):
        """Summed loss, confusion matrix and top-5 hits of one batch, in inference mode.

        Args:
            state: As returned by the last step function.
            images: uint8 (B, S, S, 3).
            labels: int32 (B,).
            weights: float32 (B,): 1 for real images, 0 for padding.
        """
        trainable, non_trainable = self.evaluated_values(state)
        images = augment.normalize(images, self.normalization)

        def predict(x):
            return self.model.stateless_call(trainable, non_trainable, x, training=False)[0]

        logits = tta.tta_logits(predict, images, self.tta_level)
        classes = logits.shape[-1]
        truth = ops.one_hot(labels, classes) * weights[:, None]  # (B, C)
        predicted = ops.one_hot(ops.argmax(logits, axis=-1), classes)
        top5 = ops.cast(
            ops.in_top_k(labels, ops.cast(logits, "float32"), min(5, classes)), "float32"
        )
        return EvalMetrics(
            ops.sum(cross_entropy(labels, logits) * weights),
            ops.matmul(ops.transpose(truth), predicted),
            ops.sum(top5 * weights),
        )


def _copies(model: keras.Model, kind: str) -> list:
    """A variable holding a copy of each of the model's (named `<kind>_<i>`)."""
    variables = model.trainable_variables + model.non_trainable_variables
    return [
        # A copy: TensorFlow's variable made from another's value aliases it.
        keras.Variable(ops.convert_to_numpy(v), trainable=False, name=f"{kind}_{i}")
        for i, v in enumerate(variables)
    ]


def placed_call(compiled, place):
    """`compiled(state, position, chunk)` on positions and chunks as the epoch loop and a
    training input make them, placed by `place(position, chunk)` first; with what a profile
    or a test of the program needs: the compiled function itself (`.compiled`), `.place`,
    and `.program(state, position, chunk)`, the optimised program's text."""

    def placed(state, position, chunk):
        return compiled(state, *place(position, chunk))

    placed.compiled, placed.place = compiled, place
    placed.program = lambda state, position, chunk: backends.program_text(
        compiled, state, *place(position, chunk)
    )
    return placed


def cross_entropy(labels, logits, label_smoothing: float = 0.0):
    """Softmax cross-entropy per example, in float32, against targets
    (1 - label_smoothing) one-hot + label_smoothing / classes."""
    logits = ops.cast(logits, "float32")
    if not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    targets = ops.one_hot(labels, logits.shape[-1])
    return keras.losses.categorical_crossentropy(
        targets, logits, from_logits=True, label_smoothing=label_smoothing
    )
