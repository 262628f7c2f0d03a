"""The data, from files to the batches the steps train on: `cifar` (finding, reading and
validating CIFAR-10 and -100), `splits` (a run's training, validation and test images),
`augment` (the recipe's image ops), `whitening` (the faster recipe's fixed first layer),
`inputs` and `host_input` (the training set fed to the compiled steps, augmented on the
accelerator or by tf.data). Importing this package starts no Keras."""
