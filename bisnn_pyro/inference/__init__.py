"""Guides, learning rules, the training loop and predictions over the models."""

from .bnn import BayesianSNN
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .direct import DirectELBO, DirectSVI
from .elbo import MeanFieldELBO
from .guides import SignBernoulliGuide, StraightThroughGuide
from .optim import BayesianLearningRule, NaturalGradientSign
from .predict import MODES
from .rules import RULES, Rule, make_rule
from .training import ENGINES, SCHEDULES, Trainer, TrainingDiverged

__all__ = [
    "BayesianLearningRule",
    "BayesianSNN",
    "CheckpointError",
    "DirectELBO",
    "DirectSVI",
    "ENGINES",
    "MODES",
    "MeanFieldELBO",
    "NaturalGradientSign",
    "RULES",
    "Rule",
    "SCHEDULES",
    "SignBernoulliGuide",
    "StraightThroughGuide",
    "Trainer",
    "TrainingDiverged",
    "load_checkpoint",
    "make_rule",
    "save_checkpoint",
]
