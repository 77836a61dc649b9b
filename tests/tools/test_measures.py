"""The two activation measures against a direct numpy computation (paper §6, Fig. E)."""

import numpy as np
import pytest
import torch

from tools.analysis.measures import frequency, magnitude, minmax_normalise, token_activation


def _numpy_minmax(values: np.ndarray) -> np.ndarray:
    low, high = values.min(axis=1, keepdims=True), values.max(axis=1, keepdims=True)
    return (values - low) / (high - low)


def _numpy_magnitude(x: np.ndarray) -> np.ndarray:
    return np.sqrt(((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=-1))


def _numpy_frequency(x: np.ndarray) -> np.ndarray:
    angles = np.angle(np.fft.fft(x, axis=-1))
    return np.sqrt(((angles - angles.mean(axis=1, keepdims=True)) ** 2).sum(axis=-1))


@pytest.fixture
def tokens() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3, 10, 16)) * np.array([1.0, 5.0, 0.1])[:, None, None]


def test_magnitude_matches_numpy(tokens):
    raw = magnitude(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(raw, _numpy_magnitude(tokens), rtol=1e-10)
    normalised = token_activation(torch.from_numpy(tokens).float(), "magnitude").numpy()
    np.testing.assert_allclose(normalised, _numpy_minmax(_numpy_magnitude(tokens.astype(np.float32))), atol=1e-5)


def test_frequency_matches_numpy(tokens):
    raw = frequency(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(raw, _numpy_frequency(tokens), rtol=1e-10)
    normalised = token_activation(torch.from_numpy(tokens), "frequency").numpy()
    np.testing.assert_allclose(normalised, _numpy_minmax(_numpy_frequency(tokens)), atol=1e-6)


def test_normalisation_per_image_and_constant_rows():
    values = torch.tensor([[2.0, 4.0, 3.0], [7.0, 7.0, 7.0]])
    out = minmax_normalise(values)
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]))


def test_magnitude_of_a_known_case():
    # tokens 0 and 1 are opposite around the mean, token 2 sits on it: magnitudes 5, 5, 0 -> normalised 1, 1, 0
    x = torch.tensor([[[3.0, 4.0], [-3.0, -4.0], [0.0, 0.0]]])
    assert torch.allclose(token_activation(x, "magnitude"), torch.tensor([[1.0, 1.0, 0.0]]))


def test_bad_measure_and_shape():
    with pytest.raises(ValueError, match="unknown measure"):
        token_activation(torch.zeros(1, 2, 3), "energy")
    with pytest.raises(ValueError, match="batch, tokens, channels"):
        token_activation(torch.zeros(2, 3), "magnitude")
