"""Guides, learning rules, the training loop and predictions over the models."""

from .bnn import BayesianSNN
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .direct import DirectELBO, DirectSVI
from .elbo import MeanFieldELBO
from .guides import BetaGuide, GuideList, PointSign, SignBernoulliGuide, StraightThroughGuide, WeightGuide
from .optim import BayesianLearningRule, LearningRule, NaturalGradientSign, NaturalParameter, bind_optimizer
from .predict import MODES
from .rules import RULES, Rule, make_rule
from .sites import CompositionError, LatentSite, ModelSites
from .training import ENGINES, SCHEDULES, Trainer, TrainingDiverged

__all__ = [
    "BayesianLearningRule",
    "BayesianSNN",
    "BetaGuide",
    "CheckpointError",
    "CompositionError",
    "DirectELBO",
    "DirectSVI",
    "ENGINES",
    "GuideList",
    "LatentSite",
    "LearningRule",
    "MODES",
    "MeanFieldELBO",
    "ModelSites",
    "NaturalGradientSign",
    "NaturalParameter",
    "PointSign",
    "RULES",
    "Rule",
    "SCHEDULES",
    "SignBernoulliGuide",
    "StraightThroughGuide",
    "Trainer",
    "TrainingDiverged",
    "WeightGuide",
    "bind_optimizer",
    "load_checkpoint",
    "make_rule",
    "save_checkpoint",
]
