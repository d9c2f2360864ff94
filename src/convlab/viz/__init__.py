"""Look inside a trained network: first-layer filters, feature maps, Grad-CAM and gradient saliency.

Each function returns a Visualisation (the arrays) and draws a PNG; ``plot_confusion`` draws a
confusion matrix.
"""

from convlab.viz.cam import grad_cam, grad_cam_maps, saliency, saliency_maps
from convlab.viz.confusion import plot_confusion
from convlab.viz.feature_maps import feature_maps, trace_layers
from convlab.viz.filters import filters
from convlab.viz.inputs import Visualisation

__all__ = [
    "Visualisation",
    "feature_maps",
    "filters",
    "grad_cam",
    "grad_cam_maps",
    "plot_confusion",
    "saliency",
    "saliency_maps",
    "trace_layers",
]
