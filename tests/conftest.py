import pytest

from checkpoints import write_tiny_msclap_checkpoint


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small random MS-CLAP 2023 checkpoint (official layout) with GPT-2 tokenizer files beside it."""
    return write_tiny_msclap_checkpoint(tmp_path_factory.mktemp("tiny-msclap"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_weights):
    from encoders import load_encoder

    return load_encoder("msclap-2023", weights=tiny_weights, device="cpu")
