"""Every activation name convlab accepts builds the function the notes give it."""

import math

import pytest
import torch

from convlab.choices import ACTIVATIONS
from convlab.errors import ConvlabError
from convlab.layers.activations import FACTORIES, make_activation


def test_every_accepted_name_has_exactly_one_factory():
    assert sorted(FACTORIES) == sorted(ACTIVATIONS)


@pytest.mark.parametrize(
    ("name", "at_one"),
    [
        ("identity", 1.0),
        ("sigmoid", 1 / (1 + math.exp(-1))),
        ("tanh", math.tanh(1)),
        ("arctan", math.atan(1)),
        ("relu", 1.0),
        ("elu", 1.0),
        ("softplus", math.log1p(math.e)),
    ],
)
def test_activations_compute_their_formula(name, at_one):
    assert make_activation(name)(torch.ones(1)).item() == pytest.approx(at_one, rel=1e-6)


def test_negative_side_of_the_rectifiers():
    x = torch.tensor([-2.0])
    assert make_activation("relu")(x.clone()).item() == 0.0
    assert make_activation("leaky_relu")(x.clone()).item() == pytest.approx(-0.02)  # slope 0.01, the notes'
    assert make_activation("prelu")(x.clone()).item() == pytest.approx(-0.5)  # learned slope starts at 0.25
    assert make_activation("elu")(x.clone()).item() == pytest.approx(math.exp(-2) - 1)


def test_each_call_is_a_new_module_and_unknown_names_are_one_sentence():
    assert make_activation("prelu") is not make_activation("prelu")
    with pytest.raises(ConvlabError, match="did you mean relu"):
        make_activation("rellu")
