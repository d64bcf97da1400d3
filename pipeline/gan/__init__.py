"""GAN: the networks (``models/``), training data, the device/precision runtime, training of the pose and face
GANs, checkpoints, the launcher and generation for transfer. May import ``pose``, ``footage`` and ``provenance``."""
