"""Training: `optimizers` and `schedules` (the recipes' update rules), `steps` (the pure,
compiled training and evaluation steps), `evaluation` (the test set in batches),
`records` (an epoch's record), `stopwatch` (DAWNBench's clock) and `loop` (the epochs, with
Keras callbacks for everything else)."""
