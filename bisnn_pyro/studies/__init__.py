"""Studies: many runs of one base configuration, varied along named axes and seeds, and the
statistics that aggregate them honestly (intervals over seeds, paired differences)."""

from .report import write_study_report
from .runner import run_study
from .spec import Arm, StudyRun, StudySpec, read_study
from .statistics import Summary, mean_interval, paired_difference, summarise

__all__ = [
    "Arm",
    "StudyRun",
    "StudySpec",
    "Summary",
    "mean_interval",
    "paired_difference",
    "read_study",
    "run_study",
    "summarise",
    "write_study_report",
]
