"""A run is one configuration: TOML files, parts by name with their options, user parts through
plugins, config.json read back as a configuration, and one-line errors for every bad input."""

import json
import sys
import textwrap

import pytest
import torch

from bisnn_pyro.cli import main
from bisnn_pyro.config import ConfigError
from bisnn_pyro.config.run import SECTIONS, ExperimentConfig
from bisnn_pyro.inference.rules import RULES

TINY = ["--epochs", "2", "--hidden", "12", "--steps", "20", "--burn-in", "4", "--train-size", "40",
        "--test-size", "60", "--samples", "3", "--quiet"]


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, *argv) -> str:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("bisnn-pyro: error: ") and err.count("\n") == 1, err
    return err


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def same_run(first, second):
    """Two run folders trained to the same losses, bit for bit, and the same parameters."""
    assert [m["loss"] for m in metrics(first)] == [m["loss"] for m in metrics(second)]
    a = torch.load(first / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(second / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("rule", RULES)
def test_config_json_rebuilds_the_run_bit_for_bit(tmp_path, capsys, rule):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli(capsys, "train", "--rule", rule, *TINY, "--out", first)[0] == 0
    assert run_cli(capsys, "train", "--config", first / "config.json", "--out", second)[0] == 0
    same_run(first, second)
    assert (first / "config.json").read_text() == (second / "config.json").read_text()


def test_explicit_parts_from_a_toml_file_and_flags_round_trip(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text(textwrap.dedent("""
        [data]
        steps = 20
        burn_in = 4
        train_size = 40
        test_size = 60

        [model]
        hidden = [12]

        [prior]
        name = "beta-binary"
        a = 2
        b = 2

        [guide]
        name = "sign-bernoulli"
        temperature = 0.7

        [training]
        epochs = 2
        samples = 3
    """))
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["--config", toml, "--set", "optim.lr=1e-3", "--optim.momentum", "0.5", "--quiet"]
    assert run_cli(capsys, "train", *argv, "--out", first)[0] == 0
    config = json.loads((first / "config.json").read_text())
    assert config["prior"] == {"name": "beta-binary", "a": 2.0, "b": 2.0, "per": "layer"}
    assert config["guide"] == {"name": "sign-bernoulli", "temperature": 0.7, "init_scale": 0.1}
    assert config["optim"] == {"name": "learning-rule", "lr": 1e-3, "momentum": 0.5, "companion_lr": 0.01}
    assert config["training"]["epochs"] == 2 and config["model"]["hidden"] == [12]
    assert run_cli(capsys, "train", "--config", first / "config.json", "--quiet", "--out", second)[0] == 0
    same_run(first, second)


def test_later_sources_win_and_explicit_parts_win_over_the_rule(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[training]\nrule = "ste"\nepochs = 5\n[optim]\nlr = 0.05\n')
    from bisnn_pyro.cli import _parser, _raw_config

    args, extra = _parser().parse_known_args(
        ["train", "--config", str(toml), "--set", "training.epochs=7", "--epochs", "9", "--guide", "sign-bernoulli",
         "--guide.temperature=0.3", "--out", "x"]
    )
    config = ExperimentConfig(_raw_config(args, extra))
    assert config.epochs == 9 and config.rule == "ste"
    assert config.guide == {"name": "sign-bernoulli", "temperature": 0.3, "init_scale": 0.1}  # the rule's replaced
    assert config.optim == {"name": "adam", "lr": 0.05}  # the rule's optimiser, the file's step size
    assert config.label == "binary + sign-bernoulli + decolle + adam"


def test_every_option_has_one_definition_behind_flag_file_and_record():
    """Each option of the fixed sections has a --section.name flag, a default that validates, and a
    place in config.json."""
    from bisnn_pyro.cli import _parser

    train = _parser()._subparsers._group_actions[0].choices["train"]
    flags = {flag for action in train._actions for flag in action.option_strings}
    recorded = ExperimentConfig().to_dict()
    for section, options in SECTIONS.items():
        for option in options:
            assert f"--{section}.{option.name}" in flags
            assert option.name in recorded[section]
            if option.default is not None:
                option.parse(option.default, option.name)


def _write_plugin(folder, module):
    (folder / f"{module}.py").write_text(textwrap.dedent('''
        import math

        import pyro
        import torch
        from pyro.distributions import Beta
        from pyro.nn import PyroParam

        from bisnn_pyro.config import Option, register
        from bisnn_pyro.inference import SignBernoulliGuide
        from bisnn_pyro.models import Prior, RelaxedSignBernoulli, SignBernoulli, natural_from_probs


        class DalePrior(Prior):
            def __init__(self, a):
                super().__init__()
                self.a = a

            def buffer(self, name, weight):
                return torch.full((2, weight.shape[1]), self.a)

            def distribution(self, name, buffer, shape):
                p = pyro.sample(f"{name}_p", Beta(buffer[0], buffer[1]).to_event(1))
                return SignBernoulli(natural_from_probs(p).unsqueeze(-2)).expand(p.shape[:-1] + shape)


        class LearnedTemperatureGuide(SignBernoulliGuide):
            def __init__(self, model, **options):
                super().__init__(model, **options)
                self.log_temperature = PyroParam(torch.tensor(math.log(self.temperature)))

            def site_distribution(self, name, params):
                natural = self.natural_parameter(name, params)
                if not self.training:
                    return SignBernoulli(natural)
                return RelaxedSignBernoulli(natural, self.log_temperature.exp())


        @register(
            "prior", "dale", Option("a", float, 0.5, "Beta a = b per input neuron", check=lambda v: v > 0, expect="> 0")
        )
        def dale(a):
            """Each input neuron excites or inhibits."""
            return DalePrior(a)


        @register("guide", "learned-temperature", Option("temperature", float, 0.5, "initial tau"))
        def learned_temperature(temperature, seed=None):
            """Sign-Bernoulli with a learned temperature."""
            return lambda model: LearnedTemperatureGuide(model, temperature=temperature, seed=seed)
    '''))


def test_a_plugin_trains_evaluates_and_reports_and_is_needed_to_reopen(tmp_path, capsys, monkeypatch):
    module = "bisnn_test_plugin_parts"
    _write_plugin(tmp_path, module)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    argv = ["train", "--plugin", module, "--prior", "dale", "--prior.a", "0.8", "--guide", "learned-temperature", *TINY]
    code, printed, err = run_cli(capsys, *argv, "--out", out)
    assert code == 0, err
    assert "dale + learned-temperature + decolle + learning-rule" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["plugins"] == [module] and config["prior"] == {"name": "dale", "a": 0.8}
    code, printed, err = run_cli(capsys, "evaluate", out, "--json")
    assert code == 0 and json.loads(printed)["n"] == 60, err
    code, printed, err = run_cli(capsys, "report", out, "--out", tmp_path / "report", "--samples", "3", "--grid", "4",
                                 "--quiet")
    assert code == 0, err
    assert "dale + learned-temperature" in (tmp_path / "report" / "report.md").read_text()
    # without the plugin's module the run folder says which module it needs, in one line
    monkeypatch.syspath_prepend(str(tmp_path / "nowhere"))
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name == module]:
        del sys.modules[name]
    err = one_line_error(capsys, "evaluate", out)
    assert f"plugin {module!r} cannot be imported" in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("[training\nepochs = 3", "is not valid TOML"),
        ("[trainning]\nepochs = 3", "unknown section 'trainning' (did you mean 'training'?)"),
        ("[training]\nepoch = 3", "training.epoch: unknown option (did you mean 'epochs'?)"),
        ('[training]\nepochs = "three"', "training.epochs must be an integer, got 'three'"),
        ("[training]\nepochs = 2.5", "training.epochs must be an integer, got 2.5"),
        ("[training]\nepochs = true", "training.epochs must be an integer, got True"),
        ("[training]\nkl_weight = -1", "training.kl_weight must be a finite number >= 0"),
        ('[prior]\nname = "binery"', "prior.name: unknown prior 'binery' (did you mean 'binary'?)"),
        ('[prior]\nname = "binary"\nq = 0.3', "prior.q: prior 'binary' has no option 'q'"),
        ('[prior]\nname = "beta-binary"\nper = "row"', "prior.per: unknown value 'row'"),
        ('[guide]\ntemperature = 0', "guide.temperature must be a number in [0.01, 100]"),
        ('[data]\ndataset = "imagenet"', "data.dataset: unknown value 'imagenet'"),
        ('plugins = ["no_such_module_here"]', "plugin 'no_such_module_here' cannot be imported"),
        ("[model]\nhidden = 12", "model.hidden must be a list of int, got 12"),
    ],
)
def test_bad_configuration_files_give_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "run.toml"
    path.write_text(content)
    err = one_line_error(capsys, "train", "--config", path, "--out", tmp_path / "run")
    assert message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prior", "nope"], "unknown prior 'nope'"),
        (["--prior.z", "1"], "prior.z: prior 'binary' has no option 'z'"),
        (["--prior.p"], "--prior.p needs a value"),
        (["--bogus", "1"], "unrecognized argument '--bogus'"),
        (["--set", "epochs=3"], "expected SECTION.OPTION"),
        (["--set", "training.epochs"], "expected KEY=VALUE"),
        (["--config", "missing.toml"], "no configuration file missing.toml"),
        (["--epochs"], "expected one argument"),
        (["--resume", "--rule", "ste"], "--resume continues the run as its config.json says"),
    ],
)
def test_bad_command_lines_give_one_line(tmp_path, capsys, argv, message):
    err = one_line_error(capsys, "train", *argv, "--out", tmp_path / "run")
    assert message in err


def test_argparse_errors_are_one_line_too(capsys):
    assert "invalid choice" in one_line_error(capsys, "evaluate", "x", "--mode", "median")
    assert "required" in one_line_error(capsys, "train")
    assert "unrecognized arguments" in one_line_error(capsys, "evaluate", "x", "--bogus")


def test_validation_raises_config_errors_for_every_bad_key():
    with pytest.raises(ConfigError, match="data.dataset: unknown value 'imagenet'"):
        ExperimentConfig(dataset="imagenet")
    with pytest.raises(ConfigError, match="unknown configuration key 'epoch'"):
        ExperimentConfig(epoch=3)
    with pytest.raises(ConfigError, match="training.batch_size must be an integer"):
        ExperimentConfig(batch_size="40")  # a string in a flat config.json


def test_resume_may_raise_the_epochs_and_records_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--out", out)[0] == 0
    code, printed, _ = run_cli(capsys, "train", "--resume", "--epochs", "3", "--out", out, "--quiet")
    assert code == 0 and "3 epochs" in printed
    assert json.loads((out / "config.json").read_text())["training"]["epochs"] == 3
    assert len(metrics(out)) == 3


def _install_entry_point(folder, monkeypatch, module):
    """A distribution in ``folder`` whose entry point ``parts`` of bisnn_pyro.components is
    ``module``, on the path, with the registry to look for entry points again."""
    from bisnn_pyro.config import REGISTRY

    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[bisnn_pyro.components]\nparts = {module}\n")
    monkeypatch.syspath_prepend(str(folder))
    REGISTRY.entry_points_loaded = False


def test_an_installed_package_registers_parts_through_an_entry_point(tmp_path, capsys, monkeypatch):
    """A distribution declaring an entry point of the bisnn_pyro.components group: its parts are
    found by name with no --plugin, and the run records the module it needs."""
    (tmp_path / "ep_parts.py").write_text(textwrap.dedent('''
        from bisnn_pyro.config import Option, register
        from bisnn_pyro.models import BinaryPrior

        @register("prior", "leaning", Option("p", float, 0.3, "P(w = +1)"))
        def leaning(p):
            """A prior leaning towards -1."""
            return BinaryPrior(p)
    '''))
    _install_entry_point(tmp_path, monkeypatch, "ep_parts")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--prior", "leaning", *TINY, "--out", out)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["prior"] == {"name": "leaning", "p": 0.3} and config["plugins"] == ["ep_parts"]


def test_a_rule_or_part_named_over_a_recorded_run_replaces_what_it_names(tmp_path, capsys):
    """config.json records every part, so a rule given on top of it replaces them all, and a part
    of another name drops the recorded part's options."""
    first = tmp_path / "first"
    assert run_cli(capsys, "train", *TINY, "--out", first)[0] == 0
    recorded = str(first / "config.json")
    from bisnn_pyro.cli import _parser, _raw_config

    def resolved(*argv):
        args, extra = _parser().parse_known_args(["train", "--config", recorded, *argv, "--out", "x"])
        return ExperimentConfig(_raw_config(args, extra))

    ste = resolved("--rule", "ste")
    assert ste.label == "ste" and ste.guide["name"] == "straight-through" and ste.optim == {"name": "adam", "lr": 1e-3}
    assert resolved("--set", "training.rule=fp").label == "fp"
    beta = resolved("--prior", "beta-binary", "--prior.a", "2")
    assert beta.prior == {"name": "beta-binary", "a": 2.0, "b": 1.0, "per": "layer"}
    assert resolved("--optim", "adam").optim == {"name": "adam", "lr": 1e-3}  # adam's own default, not the rule's


def test_a_recorded_configuration_given_another_data_set_takes_that_sets_defaults():
    recorded = ExperimentConfig(hidden=[8]).to_dict()
    assert recorded["data"]["steps"] is None and recorded["model"]["tau_mem"] is None  # "the data set's"
    digits = ExperimentConfig(recorded).replaced(dataset="digits-dvs")
    fresh = ExperimentConfig(dataset="digits-dvs", hidden=[8])
    assert (digits.steps, digits.burn_in, digits.tau_mem, digits.readout_gain) == (20, 3, 4.0, 4.0)
    assert digits == fresh
    explicit = ExperimentConfig(steps=50, hidden=[8]).replaced(dataset="digits-dvs")
    assert explicit.steps == 50  # a value the user chose stays


def test_options_a_data_set_does_not_use_are_refused_not_recorded():
    with pytest.raises(ConfigError, match="data.step_ms: two-moons does not use it"):
        ExperimentConfig(step_ms=5.0)
    with pytest.raises(ConfigError, match="data.train_size: digits-dvs does not use it"):
        ExperimentConfig(dataset="digits-dvs", train_size=50)
    assert ExperimentConfig(data_dir="/data").data_dir is None  # a location, not a setting


def test_a_flat_version_0_1_config_with_the_last_readout_still_opens():
    config = ExperimentConfig.from_dict(
        {"rule": "bayes", "learning": "end-to-end-output", "likelihood": "last-readout", "hidden": [8]}, saved=True
    )
    assert config.learning == "end-to-end" and config.likelihood == {"name": "last-readout"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "model.hidden="], "model.hidden needs at least 1 value"),
        (["--set", "training.steps=5"], "training.steps: unknown option (it is data.steps)"),
        (["--model", "conv", "--hidden", "5"], "model.hidden shapes an mlp"),
        (["--set", "plugins=no_such_a,no_such_b"], "plugin 'no_such_a' cannot be imported"),
    ],
)
def test_more_bad_configurations_give_one_line(tmp_path, capsys, argv, message):
    assert message in one_line_error(capsys, "train", *argv, "--out", tmp_path / "run")


def test_a_configuration_file_that_is_not_text_gives_one_line(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_bytes(b"\xff\xfe")
    assert "is not UTF-8 text" in one_line_error(capsys, "train", "--config", path, "--out", tmp_path / "run")


def test_resume_refuses_fewer_epochs_than_trained(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--out", out)[0] == 0
    before = (out / "config.json").read_text()
    assert "has trained 2 epochs already" in one_line_error(capsys, "train", "--resume", "--epochs", "1", "--out", out)
    assert (out / "config.json").read_text() == before


def test_a_broken_entry_point_gives_one_line_for_every_command(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken_parts.py").write_text("raise RuntimeError('half-installed')\n")
    _install_entry_point(tmp_path, monkeypatch, "broken_parts")
    assert "entry point parts (broken_parts)" in one_line_error(capsys, "datasets")


def test_a_part_option_may_not_take_a_flag_another_option_has():
    from bisnn_pyro.config import Option, register

    with pytest.raises(ValueError, match="flag --temperature already sets guide.temperature"):
        register("prior", "clashing", Option("temperature", float, 1.0, "t", flags=("--temperature",)))(lambda t: t)
