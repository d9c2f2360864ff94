"""--option carries model options only: a setting with a flag of its own is refused, from every door."""

import pytest

import convlab
from convlab.cli import main
from convlab.cli.options import parse_model_option


def test_option_values_are_read_as_yaml():
    assert parse_model_option("hidden=[500, 150]") == ("hidden", [500, 150])
    assert parse_model_option("aux_logits=false") == ("aux_logits", False)
    assert parse_model_option("stride_in=1x1") == ("stride_in", "1x1")


@pytest.mark.parametrize("name", ["num_classes", "in_chans", "init"])
def test_a_setting_with_a_flag_of_its_own_is_not_an_option(name, capsys):
    assert main(["summary", "lenet5", "--option", f"{name}=4"]) == 2
    flag = "--" + name.replace("_", "-")
    assert f"{name} has a flag of its own: give {flag} 4" in capsys.readouterr().err
    with pytest.raises(
        convlab.ConvlabError, match=f"{name} is not a model option .* give {name} \\({flag}\\)"
    ):
        convlab.train(model="mlp", data="digits", options={name: 4})
