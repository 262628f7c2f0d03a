"""What a run writes to its workdir and shows as it goes: `workdir` (the folder, files
written whole or not at all), `checkpoints` (one after every epoch; resuming), `progress`
(the table and the line within an epoch), `tensorboard`, `results` (results.json),
`report` (report.png) and `export` (the trained model and the model for inference).
Importing this package starts no Keras."""
