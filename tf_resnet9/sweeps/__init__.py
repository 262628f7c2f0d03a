"""Sweeps: a grid of training runs over any `TrainConfig` settings, each combination trained
with several seeds, and what they gave, side by side.

    grid.py      the grid: `--set NAME=V1,V2` parsed, every combination's configs built and
                 checked before anything trains, the run folders' names, sweep.json
    jobs.py      the unit of work: one combination's seeds trained (`train_job`)
    queues.py    where the jobs run: this process, a process per local GPU
                 (concurrent.futures), or Ray tasks on a cluster
    driver.py    a sweep end to end (`run_sweep`): resuming, the queue, the summary
    summary.py   a row per combination (median, min, max over the seeds): the text table,
                 sweep.csv, sweep.png
    hparams.py   each run's swept settings and final metrics for TensorBoard's HParams

`python -m tf_resnet9.sweep` is the command. Importing this package starts no Keras.
"""
