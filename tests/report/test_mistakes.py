"""The report's worst-classified images: the most confident mistakes first, each with both probabilities."""

import math

import torch
from torch import nn

from convlab.report.figures import worst_classified


class OneHotBundle:
    """Four validation 'images' whose pixels are the logits an identity network returns."""

    classes = ["cat", "dog"]
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 4.0], [2.0, 2.5]])
    labels = torch.tensor([0, 0, 0, 1])

    def loader(self, split, batch_size, *, device="cpu", **_):
        return [
            (self.logits[i : i + batch_size], self.labels[i : i + batch_size])
            for i in range(0, 4, batch_size)
        ]


def test_the_most_confident_mistakes_come_first_with_their_probabilities():
    mistakes = worst_classified(nn.Identity(), OneHotBundle(), "val", OneHotBundle.classes)
    # image 0 is right; images 2 and 1 are cats called dogs (p(cat) = 1/(1+e^4), then 1/(1+e)); image 3 is right
    assert [m.index for m in mistakes] == [2, 1]
    assert [(m.true, m.predicted) for m in mistakes] == [("cat", "dog"), ("cat", "dog")]
    assert math.isclose(mistakes[0].p_true, 1 / (1 + math.exp(4)), rel_tol=1e-5)
    assert math.isclose(mistakes[0].p_predicted, 1 / (1 + math.exp(-4)), rel_tol=1e-5)
    assert mistakes[1].name == "val image 1"
    assert len(worst_classified(nn.Identity(), OneHotBundle(), "val", OneHotBundle.classes, n=1)) == 1
