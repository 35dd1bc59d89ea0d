"""The training tests' tiny real parts (tiny SVD components, rendered clips, a latent cache), here too."""

from tests.training.conftest import latent_cache, one_thread, renders, tiny_svd  # noqa: F401
