"""The tutorial docs/tutorials/calibration_study.py, run at its small size: the study runs every
run, the report's paired interval is the Student-t interval of the per-seed differences computed
by hand from runs.csv, and the pairing arithmetic holds."""

import re

from tutorials import run_tutorial

NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
INTERVAL = rf"mean {NUMBER} interval \[{NUMBER}, {NUMBER}\] lower in (\d+) of (\d+) seeds"


def value(out: str, label: str) -> float:
    """The first number after ``label:`` on its line."""
    found = re.search(re.escape(label) + r":\s*" + NUMBER, out)
    assert found, f"{label!r} not printed"
    return float(found.group(1))


def paired(out: str, label: str) -> tuple[float, float, float, int, int]:
    """``label: mean M interval [L, H] lower in K of N seeds`` -> (M, L, H, K, N)."""
    found = re.search(re.escape(label) + r":\s*" + INTERVAL, out)
    assert found, f"{label!r} not printed with its interval"
    mean, low, high, lower, seeds = found.groups()
    return float(mean), float(low), float(high), int(lower), int(seeds)


def test_calibration_study(tmp_path):
    out = run_tutorial("calibration_study", tmp_path, timeout=600)

    # the study file describes 2 arms x 3 seeds, and every run trained
    assert value(out, "runs in the study") == 6
    assert re.search(r"6 run\(s\) trained, 0 scored again, 0 finished before, 0 failed", out)
    seed_lines = re.findall(r"seed (\d+): ece difference " + NUMBER, out)
    assert [int(seed) for seed, _ in seed_lines] == [0, 1, 2]

    # the t quantiles the prose relies on
    assert abs(value(out, "t quantile 0.975 with 3 seeds") - 4.303) < 1e-3
    assert abs(value(out, "t quantile 0.975 with 5 seeds") - 2.776) < 1e-3

    # the paired interval by hand from runs.csv, paired.csv and paired_difference agree (6 decimals printed)
    hand = paired(out, "by hand")
    for label in ("paired.csv", "paired_difference"):
        library = paired(out, label)
        assert all(abs(a - b) <= 2e-6 for a, b in zip(hand[:3], library[:3], strict=True)), (label, hand, library)
        assert hand[3:] == library[3:], (label, hand, library)
    mean, low, high, lower, seeds = hand
    assert seeds == 3 and 0 <= lower <= 3 and low < mean < high
    differences = [float(d) for _, d in seed_lines]
    assert abs(sum(differences) / 3 - mean) <= 2e-6  # the mean of the printed per-seed differences
    assert lower == sum(d < 0 for d in differences)
    # the mean of the differences is the difference of the means (same seeds)
    assert abs(value(out, "difference of the arms' means") - mean) <= 2e-6
    assert abs(value(out, "half-width of the paired interval") - (high - low) / 2) <= 2e-6

    # pairing narrows the interval exactly when the two arms' metrics covary positively over seeds
    correlation = value(out, "correlation of the two arms' ece over seeds")
    unpaired = value(out, "half-width as if unpaired")
    assert (value(out, "half-width of the paired interval") < unpaired) == (correlation > 0)

    # the report's tables hold both arms, and the many comparisons are counted
    assert re.search(r"bayes\s+ensemble\s", out) and re.search(r"ste\s+map\s", out)
    total = value(out, "paired intervals in paired.csv")
    assert total >= 5 * 8  # 5 pairs of predictors (K = 1, 10, 30 and MAP; ste's MAP) x 8 metrics
    assert 0 <= value(out, "excluding 0") <= total
