"""Every backend against PyTorch: autograd for the loss and its gradients, torch.optim for
the update rules.

The referee is an ``nn.Sequential(Linear, act, Linear, ...)`` in float64 holding the
network's float32 weights, so its numbers are exact to ~1e-16 for the same inputs; a
float32 backend is then held to float32 precision.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import BACKENDS, random_data, random_params

import kernels
from kernels import ACTIVATIONS, Net, Optimizer, optimizer_state, param_layout
from kernels.layout import VALID_HEADS

pytestmark = pytest.mark.torch

SHAPES = [(784, 16, 16, 10), (2, 2, 1), (4, 3, 2), (5, 7, 7, 7, 3)]
SHAPE_IDS = ["-".join(map(str, sizes)) for sizes in SHAPES]
HEADS = [pytest.param(output, loss, id=f"{output}-{loss}") for output, loss in VALID_HEADS]


def torch_model(torch, net, params):
    """nn.Sequential(Linear, act, ..., Linear[, Sigmoid]) in float64 holding ``params``.

    A softmax head adds no module: F.cross_entropy takes the logits.
    """
    nn = torch.nn
    modules = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}
    layers = []
    layout = param_layout(net.sizes)
    for i, ((w0, b0, end), n_in, n_out) in enumerate(
        zip(layout, net.sizes[:-1], net.sizes[1:], strict=True)
    ):
        linear = nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[w0:b0].reshape(n_out, n_in).astype(float)))
            linear.bias.copy_(torch.from_numpy(params[b0:end].astype(float)))
        layers.append(linear)
        name = net.activation if i < net.n_layers - 1 else net.output
        if name in modules:
            layers.append(modules[name]())
    return nn.Sequential(*layers)


def flat(torch, model, tensors=None):
    """Weights and biases (or the per-parameter ``tensors``) in the flat layout, float64."""
    values = [p if tensors is None else tensors[p] for p in model.parameters()]
    return torch.cat([v.detach().reshape(-1) for v in values]).numpy()


def torch_input(torch, X):
    """X as float64, uint8 pixels read as x / 255."""
    return torch.from_numpy(X / 255 if X.dtype == np.uint8 else X.astype(np.float64))


def torch_loss(torch, net, model, X, targets):
    out = model(torch_input(torch, X))
    if net.loss == "cross_entropy":
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(targets.astype(np.int64)))
    return torch.nn.functional.mse_loss(out, torch.from_numpy(targets.astype(np.float64)))


def assert_matches(got, expected, rtol=1e-5):
    """Within rtol of each value, or of the largest one for values near zero."""
    scale = float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * 0.1 * scale + 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_loss_and_grads_match_autograd(torch, backend, sizes, activation, output, loss):
    net = Net(sizes, activation, output, loss)
    params = random_params(net, seed=sum(sizes), scale=0.3 if sizes[0] == 784 else 0.8)
    X, targets = random_data(net, 8, seed=len(sizes), uint8=sizes[0] == 784)

    value, grads = kernels.backend(backend).loss_and_grads(params, net, X, targets)

    model = torch_model(torch, net, params)
    expected = torch_loss(torch, net, model, X, targets)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-5, abs=1e-12)
    assert_matches(grads, flat(torch, model, {p: p.grad for p in model.parameters()}))

    outputs = model(torch_input(torch, X))
    if net.output == "softmax":
        outputs = torch.softmax(outputs, dim=1)
    assert_matches(kernels.backend(backend).forward(params, net, X), outputs.detach().numpy())


TORCH_OPTIMIZERS = {
    "sgd": lambda torch, ps, wd: torch.optim.SGD(ps, lr=0.1, weight_decay=wd),
    "momentum": lambda torch, ps, wd: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=wd),
    "adam": lambda torch, ps, wd: torch.optim.Adam(
        ps, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd
    ),
}
STATE_NAMES = {
    "momentum": {"velocity": "momentum_buffer"},
    "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_steps_match_torch_optim(torch, backend, name, weight_decay):
    """Three steps, one train_steps call each (step0 carries Adam's count across calls)."""
    net = Net((5, 7, 7, 3), "tanh")
    params = random_params(net, seed=20)
    X, labels = random_data(net, 12, seed=21)
    lrs = np.array([0.1, 0.05, 0.2] if name != "adam" else [0.01, 0.005, 0.02], np.float32)
    optimizer, state = Optimizer(name, weight_decay=weight_decay), optimizer_state(net, name)

    model = torch_model(torch, net, params)
    torch_optimizer = TORCH_OPTIMIZERS[name](torch, model.parameters(), weight_decay)
    for step in range(3):
        rows = np.arange(4 * step, 4 * step + 4)
        losses, _ = kernels.backend(backend).train_steps(
            params, state, net, X, labels, rows, 4, lrs[step : step + 1], optimizer, step, 1
        )
        torch_optimizer.param_groups[0]["lr"] = float(lrs[step])
        torch_optimizer.zero_grad()
        loss = torch_loss(torch, net, model, X[rows], labels[rows])
        loss.backward()
        torch_optimizer.step()

        assert losses[0] == pytest.approx(loss.item(), rel=1e-5)
        assert_matches(params, flat(torch, model))
        for ours, theirs in STATE_NAMES.get(name, {}).items():
            torch_state = {p: torch_optimizer.state[p][theirs] for p in model.parameters()}
            assert_matches(state[ours], flat(torch, model, torch_state))
