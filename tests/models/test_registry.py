"""The registry: each family's options table is the one list of what create_model accepts, and its defaults."""

import pytest
from torch import nn

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info


def test_an_option_left_out_takes_the_tables_default_and_only_given_ones_are_recorded():
    table = get_model_info("googlenet").option_table
    assert table["dropout"].default == 0.4  # Szegedy et al. 2014, section 5
    assert create_model("googlenet", aux_logits=False).dropout.p == 0.4
    model = create_model("googlenet", aux_logits=False, dropout=0.2)
    assert model.dropout.p == 0.2
    assert model.convlab_spec.options == {"aux_logits": False, "dropout": 0.2}  # what checkpoints store


def test_an_unknown_option_is_refused_with_the_familys_options_in_table_order():
    message = (
        r"Model 'resnet20' does not take option\(s\) stride_in; "
        r"it accepts: activation, shortcut, zero_init_residual\."
    )
    with pytest.raises(ConvlabError, match=message):
        create_model("resnet20", stride_in="1x1")
    assert get_model_info("resnet110").option_table == get_model_info("resnet20").option_table


def test_the_cifar_resnets_default_to_the_papers_zero_padding_shortcut():
    shortcut = get_model_info("resnet56").option_table["shortcut"]
    assert shortcut.default == "A" and "zero padding" in shortcut.help  # He et al. 2015, section 4.2
    projections = create_model("resnet20", shortcut="B")
    assert isinstance(projections.layer2[0].downsample, nn.Sequential)  # a 1x1 projection + BN
