"""What the library uses of Pyro, PyTorch and tonic beyond their documented APIs: each test names
the internal it relies on, so an upgrade that moves one fails here first."""

import inspect

import pyro
import pyro.optim
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, PyroSample

from bisnn_pyro.adapters import pyro_internals, tonic_internals, torch_internals
from bisnn_pyro.models import SignBernoulli


def test_pyro_module_keeps_sample_and_param_attributes_in_private_dicts():
    module = PyroModule()
    module.w = PyroSample(SignBernoulli(torch.zeros(2)).to_event(1))
    module.b = PyroParam(torch.zeros(2))
    assert pyro_internals.sample_attributes(module) == ("w",)
    assert pyro_internals.param_attributes(module) == ("b",)
    assert [name for name, _ in module.named_parameters()] == ["b_unconstrained"]
    assert pyro_internals.sample_attributes(torch.nn.Linear(2, 2)) == ()


def test_pyro_optim_per_parameter_optimisers():
    optim = pyro.optim.Adam(lambda name: {"lr": 0.5 if name.endswith("a") else 0.1}, {"clip_norm": 1.0})
    assert optim.pt_optim_args_argc == 1
    for attribute in ("optim_objs", "grad_clip", "pt_optim_constructor", "pt_optim_args", "pt_clip_args"):
        assert hasattr(optim, attribute), attribute
    assert callable(pyro.optim.PyroOptim._clip_grad)
    param = torch.nn.Parameter(torch.ones(2))
    made = pyro_internals.add_parameter_optimizer(optim, param, "net.a")
    assert pyro_internals.optimizer_objects(optim)[param] is made and made.param_groups[0]["lr"] == 0.5
    assert pyro_internals.optimizer_constructor(optim) is torch.optim.Adam
    param.grad = torch.full((2,), 10.0)
    optim([param])  # Pyro's own step finds the optimiser made here and clips the gradient first
    assert param.grad.norm() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="names"):
        pyro_internals.add_parameter_optimizer(optim, torch.nn.Parameter(torch.ones(1)), None)


def test_trace_mean_field_elbo_hooks_exist():
    from pyro.infer import TraceMeanField_ELBO
    from pyro.infer.trace_mean_field_elbo import _check_mean_field_requirement

    for hook in ("_get_trace", "_differentiable_loss_particle", "_guess_max_plate_nesting"):
        assert callable(getattr(TraceMeanField_ELBO, hook)), hook
    assert list(inspect.signature(_check_mean_field_requirement).parameters) == ["model_trace", "guide_trace"]


def test_torch_internals():
    grad, out = torch.randn(5), torch.tanh(torch.randn(5))
    torch.testing.assert_close(torch_internals.tanh_backward(grad, out), grad * (1 - out**2))
    value = torch.tensor([-1.0, -0.2, 0.3, 2.0])
    expected = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert torch.equal(torch_internals.hardtanh_backward(torch.ones(4), value, -0.5, 0.5), expected)
    assert not torch_internals.is_tracing()
    t = torch.zeros(2)
    before = torch_internals.version(t)
    t.add_(1)
    assert torch_internals.version(t) == before + 1


def test_tonic_datasets_check_their_files_in_check_exists():
    import tonic.datasets

    for dataset in (tonic.datasets.NMNIST, tonic.datasets.DVSGesture):
        assert callable(dataset._check_exists)
        local = tonic_internals.without_download(dataset)
        assert issubclass(local, dataset) and local.__name__ == dataset.__name__  # tonic names folders after it
        assert local._check_exists(None) is True


def test_tonic_classes_without_download_pickle():
    """DataLoader workers started by spawn receive the dataset pickled: the class must be found."""
    import pickle

    import tonic.datasets

    for name in tonic_internals.DATASETS:
        local = tonic_internals.without_download(getattr(tonic.datasets, name))
        assert getattr(tonic_internals, name) is local
        assert pickle.loads(pickle.dumps(local)) is local


def test_svi_collects_parameters_through_unconstrained():
    """Pyro's SVI steps ``site["value"].unconstrained()`` of each param site: a NaturalParameter
    held by a PyroModule answers it with itself, and so trains through plain SVI."""
    from bisnn_pyro.inference import MeanFieldELBO, NaturalParameter
    from bisnn_pyro.models import RelaxedSignBernoulli

    class Guide(PyroModule):
        def forward(self):
            pyro.sample("w", RelaxedSignBernoulli(self.lam, 0.5).to_event(1))

    def model():
        pyro.sample("w", SignBernoulli(torch.full((3,), 0.5)).to_event(1))

    with pyro.settings.context(module_local_params=True):  # as the library's modules run
        guide = Guide()
        guide.lam = NaturalParameter(torch.zeros(3))
        assert guide.lam.unconstrained() is guide.lam
        svi = pyro.infer.SVI(model, guide, pyro.optim.SGD({"lr": 0.5}), MeanFieldELBO())
        svi.step()  # the loss is KL(q || p), whose gradient at lam = 0 is -(lam_p - 0) (1 - tanh^2 0) = -0.5
    torch.testing.assert_close(guide.lam.detach(), torch.full((3,), 0.25))


def test_two_moons_needs_no_tonic_and_an_event_set_without_it_is_one_line(tmp_path, monkeypatch, capsys):
    """tonic (the [events] extra) loads only when an event set is read; without it, one line."""
    import subprocess
    import sys

    from bisnn_pyro.cli import main

    probe = "import sys, bisnn_pyro.cli; print(sorted(m for m in ('tonic', 'h5py', 'librosa') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
    for module in ("tonic", "tonic.datasets", "tonic.transforms"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if tonic were not installed
    (tmp_path / "NMNIST" / "Train" / "0").mkdir(parents=True)
    (tmp_path / "NMNIST" / "Train" / "0" / "00001.bin").write_bytes(b"")
    code = main(
        ["train", "--dataset", "n-mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert 'the event-camera data sets need tonic, which is not installed' in err and "[events]" in err
