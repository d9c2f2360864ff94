"""The speed levers compute what the plain path computes.

Levers: a convolution covering its input as one matrix product (convlab.speed), channels_last, bf16
autocast, fused optimizers, torch.compile, ONNX Runtime.

Tolerances: channels_last float32 = NCHW float32 within 1e-4 on logits (only the summation order
of the convolutions changes); bf16 predicts the same class as float32 for >= 98% of real test
images with a trained model (bf16 keeps 8 bits of mantissa: logits move by about 1% of their
range, which flips only near-ties); ONNX Runtime within 1e-4; torch.compile's training steps
within 1e-5 (inductor's kernels only sum in their own order). The compile test is the one slow
test here: inductor compiles LeNet-5's forward and backward from cold.
"""

import copy

import pytest
import torch
from torch import nn

from convlab.evaluation import evaluate_model
from convlab.models import create_model
from convlab.speed import (
    BitwiseReLU,
    BitwiseReLU6,
    CoveringConv2d,
    DepthwiseConv2d,
    PatchGradConv2d,
    covers,
    fast_layers_note,
    for_inference,
    is_depthwise,
    is_plain_dense,
    plain_activations,
    use_fast_layers,
)
from convlab.training import Schedule, build_optimizer, resolve_config, train_step

LENET = {"pool": "max", "activation": "relu"}


@pytest.fixture(scope="module")
def fashion(fashion_mnist):
    return fashion_mnist(image_size=(32, 32), limit=6000, val_split=0.1)


@pytest.fixture(scope="module")
def trained_lenet(fashion):
    """LeNet-5 after three epochs on 5,400 Fashion-MNIST images (about 80% test top-1), in eval mode."""
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1, **LENET)
    config = resolve_config(optimizer="adamw", lr=0.003)
    optimizer = build_optimizer(model, "adamw", 0.003)
    schedule = Schedule(optimizer, "constant", 3, len(fashion.loader("train", 128, drop_last=True)))
    for epoch in range(3):
        for images, labels in fashion.loader("train", 128, shuffle=True, epoch=epoch, drop_last=True):
            train_step(model, images, labels, optimizer, schedule, nn.CrossEntropyLoss(), config)
    return model.eval()


def test_channels_last_float32_gives_the_nchw_logits(fashion):
    images, _ = next(iter(fashion.loader("test", 64)))
    for name, options, batch in (("lenet5", LENET, images), ("resnet20", {}, images[:, :, 2:30, 2:30])):
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_chans=1, **options).eval()
        with torch.inference_mode():
            plain = model(batch)
            fast = model.to(memory_format=torch.channels_last)(
                batch.contiguous(memory_format=torch.channels_last)
            )
        assert (fast - plain).abs().max() <= 1e-4, name


def test_bf16_predicts_the_float32_class_for_98_percent_of_real_images(trained_lenet, fashion):
    images, labels = zip(*fashion.loader("test", 500))
    images, labels = torch.cat(images[:4]), torch.cat(labels[:4])  # 2,000 test images
    model = trained_lenet
    with torch.inference_mode():
        plain = model(images)
        fast_model = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = fast_model(images.contiguous(memory_format=torch.channels_last)).float()
    model.to(memory_format=torch.contiguous_format)
    agreement = (fast.argmax(1) == plain.argmax(1)).float().mean().item()
    assert (plain.argmax(1) == labels).float().mean() > 0.75  # a trained model, so agreement means something
    assert agreement >= 0.98
    # evaluate_model's bf16 top-1 moves by at most the disagreement.
    off = evaluate_model(model, fashion, "test", amp="off")
    bf16 = evaluate_model(model, fashion, "test", amp="bf16")
    assert abs(off.top1 - bf16.top1) <= 0.02


def test_onnx_runtime_gives_the_pytorch_logits(trained_lenet, fashion, tmp_path):
    from convlab.exporting import OnnxClassifier, export_model

    record = {
        "classes": fashion.classes,
        "input": {"channels": 1, "size": [32, 32], "mean": list(fashion.mean), "std": list(fashion.std)},
    }
    export_model(trained_lenet, record, "onnx", tmp_path / "lenet5.onnx", check_samples=4)
    runtime = OnnxClassifier(tmp_path / "lenet5.onnx", providers=["CPUExecutionProvider"])
    images, _ = next(iter(fashion.loader("test", 256)))
    with torch.inference_mode():
        expected = trained_lenet(images)
    assert (torch.from_numpy(runtime.predict_logits(images)) - expected).abs().max() <= 1e-4


def lenet_steps(images, labels, steps: int, **levers) -> tuple[torch.Tensor, dict]:
    """LeNet-5 from seed 0 after ``steps`` momentum steps through the engine's train_step, with the speed
    levers given (channels_last, compile) set as the engine sets them: its losses and its weights."""
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1, **LENET)
    if levers.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if levers.get("compile") else model  # the weights stay model's
    config = resolve_config(lr=0.05, **levers)
    optimizer = build_optimizer(model, "momentum", 0.05)
    schedule = Schedule(optimizer, "constant", 1, steps)
    losses = [
        train_step(step_model, images, labels, optimizer, schedule, nn.CrossEntropyLoss(), config)[0]
        for _ in range(steps)
    ]
    return torch.stack(losses), model.state_dict()


def assert_same_steps(plain, fast) -> None:
    (losses_plain, weights_plain), (losses_fast, weights_fast) = plain, fast
    assert (losses_plain - losses_fast).abs().max() <= 1e-5
    assert all((weights_plain[key] - weights_fast[key]).abs().max() <= 1e-5 for key in weights_plain)


def test_a_channels_last_training_step_takes_the_same_step(fashion):
    images, labels = next(iter(fashion.loader("train", 128, shuffle=True)))
    assert_same_steps(lenet_steps(images, labels, 1), lenet_steps(images, labels, 1, channels_last=True))


@pytest.mark.slow
def test_a_compiled_training_step_takes_the_eager_step(fashion):
    """--compile (torch.compile of the model the engine steps): the same losses and weights after two steps."""
    images, labels = next(iter(fashion.loader("train", 64, shuffle=True)))
    compiled = lenet_steps(images, labels, 2, compile=True)
    assert compiled[0][1] < compiled[0][0]  # it stepped
    assert_same_steps(lenet_steps(images, labels, 2), compiled)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"])
def test_fused_optimizer_steps_match_the_per_tensor_ones(name):
    """build_optimizer picks torch's fused kernels where they exist; 20 steps land where for-each lands."""
    torch.manual_seed(0)
    fused_net = create_model("lenet5", num_classes=10, in_chans=1, **LENET)
    plain_net = create_model("lenet5", num_classes=10, in_chans=1, **LENET)
    plain_net.load_state_dict(fused_net.state_dict())
    fused = build_optimizer(fused_net, name, weight_decay=1e-4)
    assert fused.defaults["fused"] is True
    by_id = dict(zip(map(id, fused_net.parameters()), plain_net.parameters()))
    # the same groups (decay / no decay) and hyper-parameters, stepped tensor by tensor
    plain = type(fused)(
        [
            {**group, "params": [by_id[id(p)] for p in group["params"]], "fused": None, "foreach": True}
            for group in fused.param_groups
        ]
    )
    for _ in range(20):
        images, labels = torch.randn(16, 1, 32, 32), torch.randint(0, 10, (16,))
        for net, optimizer in ((fused_net, fused), (plain_net, plain)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(images), labels).backward()
            optimizer.step()
    for a, b in zip(fused_net.parameters(), plain_net.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_predictions_through_the_fast_path_match_the_plain_ones(trained_lenet, fashion, tmp_path):
    """`convlab predict --amp bf16 --channels-last`: the plain top-1 for >= 98% of real test images."""
    import copy

    from PIL import Image

    from convlab.checkpoint import save_checkpoint
    from convlab.prediction import fast_path, predict, predict_tensors

    images, _ = zip(*fashion.loader("test", 500))
    images = torch.cat(images[:2])  # 1,000 test images
    plain = predict_tensors(trained_lenet, images, fashion.classes, topk=1)
    model = fast_path(copy.deepcopy(trained_lenet), "bf16", channels_last=True)
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    fast = predict_tensors(model, images, fashion.classes, topk=1, amp="bf16", channels_last=True)
    agreement = sum(a[0]["index"] == b[0]["index"] for a, b in zip(plain, fast, strict=True)) / len(plain)
    assert agreement >= 0.98
    # the same through files and a checkpoint, as the CLI runs it
    record = {
        "classes": fashion.classes,
        "model": {"name": "lenet5", "num_classes": 10, "in_chans": 1, "options": LENET},
        "input": {"channels": 1, "size": [32, 32], "mean": list(fashion.mean), "std": list(fashion.std)},
    }
    checkpoint = save_checkpoint(tmp_path / "lenet5.safetensors", trained_lenet, record)
    pixels = ((images[:20, 0] * fashion.std[0] + fashion.mean[0]) * 255).round().clamp(0, 255).to(torch.uint8)
    files = []
    for i, picture in enumerate(pixels.numpy()):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(picture, mode="L").save(files[-1])
    slow = predict(checkpoint, files, topk=1, device="cpu")
    quick = predict(checkpoint, files, topk=1, device="cpu", amp="bf16", channels_last=True)
    matches = sum(a["predictions"][0]["index"] == b["predictions"][0]["index"] for a, b in zip(slow, quick))
    assert matches >= 19


def test_the_fast_path_is_refused_for_exported_files_and_unknown_modes(trained_lenet):
    from convlab.errors import ConvlabError
    from convlab.exporting.runtime import OnnxLogits
    from convlab.prediction import fast_path

    traced = torch.jit.trace(trained_lenet, torch.randn(1, 1, 32, 32))
    for exported in (traced, OnnxLogits(classifier=None)):
        with pytest.raises(ConvlabError, match="apply to convlab checkpoints"):
            fast_path(exported, "bf16")
        assert fast_path(exported, "off") is exported  # the plain path is always there
    with pytest.raises(ConvlabError, match="Unknown amp mode 'bf17'"):
        fast_path(trained_lenet, "bf17")


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "nhwc_input_only"])
def test_a_convolution_covering_its_input_is_computed_as_the_convolution(layout):
    """LeNet-5's C5 runs as one matrix product at 5x5 inputs: the convolution's outputs and gradients,
    with the gradients in the layout of what they are the gradients of (no NCHW gradient for NHWC maps)."""
    torch.manual_seed(0)
    covering = CoveringConv2d(16, 120, 5)
    plain = nn.Conv2d(16, 120, 5)
    plain.load_state_dict(covering.state_dict())
    x = torch.randn(64, 16, 5, 5)
    if layout == "channels_last":
        covering.to(memory_format=torch.channels_last)
        plain.to(memory_format=torch.channels_last)
    if layout != "nchw":  # nhwc_input_only: NHWC maps into a layer whose weights were left NCHW
        x = x.contiguous(memory_format=torch.channels_last)
    assert covers(covering, x)
    outputs = []
    for layer in (covering, plain):
        inputs = x.clone().requires_grad_()
        out = layer(inputs)
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        # autograd.grad hands back the gradients as computed, before .grad's copy into the leaf's layout
        outputs.append((out, *torch.autograd.grad(loss, (inputs, layer.weight, layer.bias))))
    for fast, slow in zip(*outputs, strict=True):
        assert fast.shape == slow.shape and (fast - slow).abs().max() <= 1e-4
    _, input_grad, weight_grad, _ = outputs[0]
    assert input_grad.stride() == x.stride()  # what S4's backward receives: NHWC maps get an NHWC gradient
    if layout != "nhwc_input_only":  # mixed layouts: one side is copied either way
        assert weight_grad.stride() == covering.weight.stride()
    wider = torch.randn(2, 16, 9, 9)  # a larger input gives larger maps: a convolution again
    assert not covers(covering, wider) and covering(wider).shape == (2, 120, 5, 5)
    assert (covering(wider) - plain(wider)).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_fast_layers_give_lenet5_its_outputs_and_gradients_with_the_same_parameters(name):
    """At 32x32 only C5's kernel covers its input; the swapped C5 holds the plain C5's own Parameters."""
    torch.manual_seed(0)
    plain = create_model(name)
    fast = copy.deepcopy(plain).eval()
    keys, parameters = list(fast.state_dict()), list(fast.parameters())

    assert use_fast_layers(fast, (1, 32, 32)) is fast
    swapped = [n for n, m in fast.named_modules() if type(m) is not type(plain.get_submodule(n))]
    assert swapped == ["features.c5"] and isinstance(fast.features.c5, CoveringConv2d)
    assert list(fast.state_dict()) == keys  # checkpoints load into either
    assert all(a is b for a, b in zip(fast.parameters(), parameters, strict=True))  # optimizer state stays
    assert not fast.training  # the shape pass leaves train/eval as it found it

    fast.train()
    images, labels = torch.randn(16, 1, 32, 32), torch.randint(0, 10, (16,))
    logits = []
    for model in (plain, fast):
        out = model(images)
        nn.functional.cross_entropy(out, labels).backward()
        logits.append(out)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-5)
    for (key, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=key)


def test_a_network_the_meta_device_cannot_run_keeps_its_layers():
    class ReadsAValue(nn.Module):  # a network of your own may branch on a value: meta tensors have none
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 5)  # covers a 5x5 input: it would be swapped if the pass could run

        def forward(self, x):
            y = self.conv(x)
            return y / 2 if float(y.mean()) > 100 else y

    model = ReadsAValue()
    assert use_fast_layers(model, (1, 5, 5)) is model and type(model.conv) is nn.Conv2d
    # the same layer in a network meta can run is swapped: the pass, not the layer, kept it above
    plain = nn.Sequential(nn.Conv2d(1, 4, 5))
    assert type(use_fast_layers(plain, (1, 5, 5))[0]) is CoveringConv2d


def outputs_and_gradients(layers, x, layout="nchw", bf16=False):
    """For each layer: its output on ``x`` and the gradients of a fixed weighting of that output with respect
    to the input and each Parameter, with maps and weights in ``layout`` (channels_last: as training sets it)."""
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        for layer in layers:
            layer.to(memory_format=torch.channels_last)
    results = []
    for layer in layers:
        inputs = x.clone().requires_grad_()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = layer(inputs)
        loss = (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        results.append((out, *torch.autograd.grad(loss, (inputs, *layer.parameters()))))
    return results


# kernel, stride, padding, dilation, bias, input size: MobileNet's 3x3 at strides 1 and 2 (even and odd
# sizes), ConvNeXt's 7x7, a 5x5 at stride 3, dilation, a 3x5 kernel, and no padding
DEPTHWISE = [
    (3, 1, 1, 1, False, (12, 12)),
    (3, 2, 1, 1, False, (12, 12)),
    (3, 2, 1, 1, True, (11, 13)),
    (7, 1, 3, 1, True, (9, 9)),
    (5, 3, 2, 1, False, (14, 10)),
    (3, 2, 2, 2, True, (13, 13)),
    ((3, 5), (2, 1), (1, 2), 1, False, (10, 9)),
    (3, 2, 0, 1, False, (9, 9)),
]


@pytest.mark.parametrize("kernel, stride, padding, dilation, bias, size", DEPTHWISE)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_a_depthwise_convolution_trains_with_the_convolutions_outputs_and_gradients(
    kernel, stride, padding, dilation, bias, size, layout
):
    """The input gradient as a forward convolution of the spread, turned kernels: nn.Conv2d's sums."""
    torch.manual_seed(0)
    plain = nn.Conv2d(6, 6, kernel, stride, padding, dilation, groups=6, bias=bias)
    fast = DepthwiseConv2d.sharing(copy.deepcopy(plain))
    outputs = outputs_and_gradients((plain, fast), torch.randn(4, 6, *size), layout)
    for slow, quick in zip(*outputs, strict=True):
        torch.testing.assert_close(quick, slow, rtol=0, atol=1e-5)
    assert outputs[1][1].stride() == outputs[0][1].stride()  # the layer below gets its gradient as before


def test_a_depthwise_convolution_under_bf16_autocast_takes_autocasts_sums():
    """Autocast's bf16 casts, made by the layer: bf16 outputs, float32 gradients of float32 weights."""
    torch.manual_seed(0)
    plain = nn.Conv2d(32, 32, 3, 2, 1, groups=32)
    fast = DepthwiseConv2d.sharing(copy.deepcopy(plain))
    x = torch.randn(8, 32, 28, 28).contiguous(memory_format=torch.channels_last)
    (out, *grads), (fast_out, *fast_grads) = outputs_and_gradients((plain, fast), x, bf16=True)
    assert fast_out.dtype == out.dtype == torch.bfloat16
    assert torch.equal(fast_out, out)  # the same forward kernel
    for slow, quick in zip(grads, fast_grads, strict=True):
        assert quick.dtype == slow.dtype == torch.float32
        # both sum bf16 products; the order differs: within a bf16 rounding of the largest value
        assert (quick - slow).abs().max() <= 2**-7 * slow.abs().max()


def test_training_swaps_the_depthwise_convolutions_and_inference_keeps_them_plain():
    torch.manual_seed(0)
    plain = create_model("mobilenet_v2", num_classes=10)
    depthwise = [n for n, m in plain.named_modules() if type(m) is nn.Conv2d and is_depthwise(m)]
    assert len(depthwise) == 17  # one per inverted residual block
    inference = use_fast_layers(copy.deepcopy(plain), (3, 64, 64))
    assert not any(isinstance(m, DepthwiseConv2d) for m in inference.modules())
    assert sum(type(m) is BitwiseReLU6 for m in inference.modules()) == 35  # inference's activations too

    fast = copy.deepcopy(plain)
    keys, parameters = list(fast.state_dict()), list(fast.parameters())
    use_fast_layers(fast, (3, 64, 64), training=True)
    swapped = [n for n, m in fast.named_modules() if type(m) is not type(plain.get_submodule(n))]
    relu6 = [n for n, m in plain.named_modules() if type(m) is nn.ReLU6]
    dense = [n for n, m in plain.named_modules() if type(m) is nn.Conv2d and is_plain_dense(m)]
    assert not set(dense) & set(depthwise)
    assert len(relu6) == 35 and sorted(swapped) == sorted(depthwise + dense + relu6)
    assert all(type(fast.get_submodule(n)) is PatchGradConv2d for n in dense)
    assert all(type(fast.get_submodule(n)) is BitwiseReLU6 for n in relu6)
    assert list(fast.state_dict()) == keys
    assert all(a is b for a, b in zip(fast.parameters(), parameters, strict=True))

    images, labels = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    for model in (plain, fast):
        torch.manual_seed(1)  # the classifier's dropout drops the same features on both
        nn.functional.cross_entropy(model.train()(images), labels).backward()
    for (key, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=key)
    # for_inference traces the plain layers, so it still folds batch norm into the convolutions, and puts
    # the bitwise activations back into the folded graph
    folded = for_inference(fast.eval(), "off")
    assert not any(
        isinstance(m, (nn.BatchNorm2d, DepthwiseConv2d, PatchGradConv2d)) for m in folded.modules()
    )
    assert sum(type(m) is BitwiseReLU6 for m in folded.modules()) == 35
    torch.testing.assert_close(folded(images), plain.eval()(images), rtol=1e-4, atol=1e-4)


# kernel, padding, bias, input size: vgg_mini's 3x3 stages at 7x7 and 3x3, a 1x1, a 3x3 without padding,
# a 5x5, and a 3x5 kernel on a map that is not square
PATCH_GRAD = [
    (3, 1, True, (7, 7)),
    (3, 1, False, (3, 3)),
    (1, 0, True, (5, 5)),
    (3, 0, False, (9, 9)),
    (5, 2, True, (4, 6)),
    ((3, 5), (1, 2), False, (6, 7)),
]


@pytest.mark.parametrize("kernel, padding, bias, size", PATCH_GRAD)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_a_convolution_on_small_maps_trains_with_its_outputs_and_gradients(
    kernel, padding, bias, size, layout
):
    """The weight gradient as one product of output gradients and patches, under bf16 autocast: the same
    outputs and input gradient (oneDNN's kernels), weight and bias gradients summed in another order."""
    torch.manual_seed(0)
    plain = nn.Conv2d(96, 16, kernel, 1, padding, bias=bias)
    fast = PatchGradConv2d.sharing(copy.deepcopy(plain))
    results = outputs_and_gradients((plain, fast), torch.randn(4, 96, *size), layout, bf16=True)
    (out, input_grad, *grads), (fast_out, fast_input_grad, *fast_grads) = results
    assert type(fast_out.grad_fn).__name__ == "_PatchGradConvBackward"  # the path was taken
    assert fast_out.dtype == out.dtype == torch.bfloat16 and torch.equal(fast_out, out)
    torch.testing.assert_close(fast_input_grad, input_grad, rtol=0, atol=1e-6)
    for slow, quick in zip(grads, fast_grads, strict=True):
        assert quick.shape == slow.shape and quick.dtype == slow.dtype == torch.float32
        # both sum bf16 products; the order differs: within a bf16 rounding of the largest value
        assert (quick - slow).abs().max() <= 2**-7 * slow.abs().max()


def test_a_convolution_takes_the_patches_path_only_where_it_measured_faster():
    """bf16 on the CPU, in training with gradients, at most 7x7 output positions, at least 96 maps in."""
    torch.manual_seed(0)
    conv = PatchGradConv2d.sharing(nn.Conv2d(96, 8, 3, padding=1))
    narrow = PatchGradConv2d.sharing(nn.Conv2d(64, 8, 3, padding=1))

    def path(layer, x, autocast=True, grad=True):
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
            out = layer(x.requires_grad_(grad))
        return type(out.grad_fn).__name__ if out.grad_fn is not None else None

    assert path(conv, torch.randn(2, 96, 7, 7)) == "_PatchGradConvBackward"
    bf16 = PatchGradConv2d.sharing(nn.Conv2d(96, 8, 3, padding=1).bfloat16())  # a model in bf16 itself
    assert path(bf16, torch.randn(2, 96, 7, 7).bfloat16(), autocast=False) == "_PatchGradConvBackward"
    assert path(conv, torch.randn(2, 96, 8, 8)) == "ConvolutionBackward0"  # 64 positions: oneDNN's is faster
    assert path(conv, torch.randn(2, 96, 7, 7), autocast=False) == "ConvolutionBackward0"  # float32
    assert path(narrow, torch.randn(2, 64, 7, 7)) == "ConvolutionBackward0"  # 64 maps in
    assert path(conv, torch.randn(2, 96, 7, 7), grad=False) is None  # no gradient to gain on
    conv.eval()
    assert path(conv, torch.randn(2, 96, 7, 7)) == "ConvolutionBackward0"
    # strided, dilated and grouped convolutions stay nn.Conv2d in training
    for other in (
        nn.Conv2d(96, 8, 3, 2, 1),
        nn.Conv2d(96, 8, 3, 1, 2, 2),
        nn.Conv2d(96, 96, 3, 1, 1, groups=2),
    ):
        assert not is_plain_dense(other)
        assert type(use_fast_layers(nn.Sequential(other), (96, 7, 7), training=True)[0]) is nn.Conv2d


def test_vgg_mini_trains_with_the_patches_weight_gradients_and_predicts_with_plain_layers():
    """The best recipe's network: its stride-1 convolutions swapped in training, the same Parameters and
    keys, a bf16 NHWC step within bf16 rounding of the plain one, and inference on nn.Conv2d again."""
    torch.manual_seed(0)
    plain = create_model("vgg_mini", num_classes=10, in_chans=1, width=3).to(
        memory_format=torch.channels_last
    )
    fast = copy.deepcopy(plain)
    keys, parameters = list(fast.state_dict()), list(fast.parameters())
    use_fast_layers(fast, (1, 28, 28), training=True)
    assert sum(type(m) is PatchGradConv2d for m in fast.modules()) == 6
    assert list(fast.state_dict()) == keys
    assert all(a is b for a, b in zip(fast.parameters(), parameters, strict=True))
    images = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (8,))
    for model in (plain, fast):
        with torch.autocast("cpu", torch.bfloat16):
            nn.functional.cross_entropy(model.train()(images), labels).backward()
    for (key, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        # the 7x7 and 3x3 stages' weight gradients sum in another order, and so do the layers below them
        assert (b.grad - a.grad).abs().max() <= 2**-6 * a.grad.abs().max(), key
    folded = for_inference(fast.eval(), "bf16")
    assert not any(isinstance(m, PatchGradConv2d) for m in folded.modules())


def test_the_note_training_writes_counts_the_swapped_layers_by_kind():
    model = create_model("vgg_mini", num_classes=10, in_chans=1)
    assert fast_layers_note(model) is None  # the network as the zoo builds it
    use_fast_layers(model, (1, 28, 28), training=True)
    note = "fast layers (the same sums, see convlab.speed): 6 PatchGradConv2d, 6 BitwiseReLU"
    assert fast_layers_note(model) == note and len(note) <= 80  # one line of a narrow terminal
    lenet = use_fast_layers(create_model("lenet5", num_classes=10, in_chans=1), (1, 32, 32), training=True)
    assert fast_layers_note(lenet).endswith(": 1 CoveringConv2d, 2 PatchGradConv2d")  # C5, then C1 and C3


# every kind of 16-bit number an activation meets: zeros of both signs, the largest and smallest
# normal and subnormal values, the infinities, and numbers on both sides of ReLU6's 6
SPECIAL = [0.0, -0.0, 6.0, 5.96875, 6.03125, 1e-40, -1e-40, 1e-30, 3e38, -3e38, float("inf"), float("-inf")]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("plain_cls, bitwise_cls", [(nn.ReLU, BitwiseReLU), (nn.ReLU6, BitwiseReLU6)])
@pytest.mark.parametrize("inplace", [True, False])
def test_bitwise_activations_give_the_plain_outputs_and_gradients(dtype, plain_cls, bitwise_cls, inplace):
    """The int16 clamp is the activation for every finite number and both infinities; the gradient too."""
    torch.manual_seed(0)
    values = torch.cat([torch.tensor(SPECIAL), torch.randn(8 * 4 * 7 * 9 - len(SPECIAL)) * 8]).to(dtype)
    x = values[torch.randperm(len(values))].view(8, 4, 7, 9)
    x = x.contiguous(memory_format=torch.channels_last)
    gradient = torch.randn(x.shape).to(dtype).contiguous(memory_format=torch.channels_last)
    results = []
    for layer in (plain_cls(inplace=inplace), bitwise_cls(inplace=inplace)):
        leaf = x.clone().requires_grad_()
        inputs = leaf * 1  # an in-place activation needs a tensor that is not a leaf
        out = layer(inputs)
        (grad,) = torch.autograd.grad(out, leaf, gradient)
        results.append((out, grad, inputs))
    (out, grad, inputs), (fast_out, fast_grad, fast_inputs) = results
    assert fast_out.dtype == dtype and fast_out.stride() == out.stride()
    assert torch.equal(fast_out, out) and torch.equal(fast_grad, grad)
    assert (fast_out.data_ptr() == fast_inputs.data_ptr()) is inplace
    assert torch.equal(fast_inputs, inputs)  # in place or not, as nn's layer leaves its input


@pytest.mark.parametrize("plain_cls, bitwise_cls", [(nn.ReLU, BitwiseReLU), (nn.ReLU6, BitwiseReLU6)])
@pytest.mark.parametrize("inplace", [True, False])
def test_bitwise_activations_without_autograd_give_the_plain_outputs(plain_cls, bitwise_cls, inplace):
    """Inference (no autograd node is made) clamps the same bits, in place where nn's layer does."""
    values = torch.cat([torch.tensor(SPECIAL), torch.linspace(-9, 9, 100)]).to(torch.bfloat16)
    for context in (torch.inference_mode, torch.no_grad):
        with context():
            plain_in, bitwise_in = values.clone(), values.clone()
            out, fast_out = plain_cls(inplace=inplace)(plain_in), bitwise_cls(inplace=inplace)(bitwise_in)
        assert torch.equal(fast_out, out) and torch.equal(bitwise_in, plain_in)
        assert (fast_out.data_ptr() == bitwise_in.data_ptr()) is inplace


def test_the_inference_copy_clamps_by_bits_and_predicts_the_plain_logits_in_bf16():
    """for_inference's folded ResNet-18 runs bitwise ReLUs (fx calls them by name), with the same logits."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10).eval().to(memory_format=torch.channels_last)
    fast = for_inference(model, "bf16")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # folded, as before
    assert sum(type(m) is BitwiseReLU for m in fast.modules()) == 17  # the stem's and two per block
    plain = plain_activations(copy.deepcopy(fast))
    assert not any(type(m) is BitwiseReLU for m in plain.modules())
    images = torch.randn(3, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    calls = []
    hook = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: calls.append(module) if type(module) is BitwiseReLU else None
    )
    try:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            fast_logits, logits = fast(images), plain(images)
    finally:
        hook.remove()
    assert len(calls) == 17  # every one of them runs
    assert torch.equal(fast_logits, logits)


def test_bitwise_activations_differ_only_for_nan_and_leave_float32_to_torch():
    nan = torch.tensor([float("nan"), -float("nan"), 7.0, -1.0], dtype=torch.bfloat16)
    # a NaN becomes a number (which one depends on its sign bit), which is why training checks its
    # weights before it saves them (tests/training/test_engine.py)
    assert torch.isin(BitwiseReLU6()(nan)[:2].float(), torch.tensor([0.0, 6.0])).all()
    assert torch.equal(BitwiseReLU6()(nan)[2:], torch.tensor([6.0, 0.0], dtype=torch.bfloat16))
    wide = torch.tensor([float("nan"), 7.0, -1.0])  # float32 runs nn's own clamp: NaN stays NaN
    assert BitwiseReLU6()(wide)[0].isnan() and torch.equal(BitwiseReLU6()(wide)[1:], torch.tensor([6.0, 0.0]))


def test_a_training_step_with_bitwise_activations_takes_the_plain_step_in_bf16():
    """ResNet-18's and MobileNetV2's step under bf16 autocast, NHWC: the same loss and gradients."""
    for name in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(0)
        plain = create_model(name, num_classes=10).to(memory_format=torch.channels_last)
        fast = use_fast_layers(copy.deepcopy(plain), (3, 64, 64), training=True)
        assert any(isinstance(m, (BitwiseReLU, BitwiseReLU6)) for m in fast.modules())
        images = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (4,))
        losses = []
        for model in (plain, fast):
            torch.manual_seed(1)  # dropout drops the same features on both
            with torch.autocast("cpu", torch.bfloat16):
                loss = nn.functional.cross_entropy(model.train()(images), labels)
            loss.backward()
            losses.append(loss)
        assert torch.equal(losses[0], losses[1]), name
        # layer3's and layer4's 2x2 and 4x4 maps take the patches' weight gradients (see above)
        patched = {id(p) for m in fast.modules() if isinstance(m, PatchGradConv2d) for p in m.parameters()}
        for (key, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
            if name == "resnet18" and id(b) in patched:
                assert (b.grad - a.grad).abs().max() <= 2**-7 * a.grad.abs().max(), key
            elif name == "resnet18":  # the activations alone: the very same numbers
                assert torch.equal(b.grad, a.grad), key
            else:  # MobileNetV2's depthwise input gradients sum in another order (see above)
                torch.testing.assert_close(b.grad, a.grad, rtol=2e-2, atol=1e-3, msg=key)
