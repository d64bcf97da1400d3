"""Networks of Everybody Dance Now: pix2pixHD generators and discriminators plus the face GAN.

Convention everywhere: images are float tensors in [-1, 1], NCHW, RGB channel order.
"""

from pipeline.gan.models.discriminator import MultiscaleDiscriminator, NLayerDiscriminator
from pipeline.gan.models.face import FaceResidualGenerator, face_box, load_face_generator
from pipeline.gan.models.generator import (
    GlobalGenerator,
    LocalEnhancer,
    build_generator,
    load_generator,
)

__all__ = [
    "FaceResidualGenerator", "GlobalGenerator", "LocalEnhancer", "MultiscaleDiscriminator",
    "NLayerDiscriminator", "build_generator", "face_box", "load_face_generator",
    "load_generator",
]
