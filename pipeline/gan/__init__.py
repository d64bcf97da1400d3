"""GAN: the networks (models/), training pairs, the device/precision/DDP runtime, training of the pose and face
GANs, checkpoints, the launcher, generation and transfer. May import pose, footage, provenance and arguments."""
