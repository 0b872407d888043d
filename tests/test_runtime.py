import subprocess
import sys
import textwrap

import pytest

from bisnn_pyro.runtime import keep_freed_memory

# In a fresh process: page faults while allocating and touching 64 MB in 4 MB blocks, after the
# same round once freed, before and after keep_freed_memory().
_PROBE = textwrap.dedent(
    """
    import resource, torch
    from bisnn_pyro.runtime import keep_freed_memory

    def faults_of_round():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [torch.ones(1 << 20) for _ in range(16)]
        del blocks
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_round()
    default = faults_of_round()
    applied = keep_freed_memory()
    faults_of_round()
    print(applied, default, faults_of_round())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is a Linux setting")
def test_keep_freed_memory_stops_fresh_pages_for_reused_blocks():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout.split()
    applied, default, kept = out[0] == "True", int(out[1]), int(out[2])
    if not applied:
        pytest.skip("the C library is not glibc")
    pages = 64 * 2**20 // 4096
    assert default > pages // 2  # the default returns the freed 64 MB and touches fresh pages
    # reused: at most a block or two of fresh pages (another allocation may land on top of the heap
    # between rounds; 0 or 1,024 faults in repeated runs here, against 16,355 by default)
    assert kept < pages // 8


def test_keep_freed_memory_rejects_a_negative_limit():
    with pytest.raises(ValueError, match="limit_mb"):
        keep_freed_memory(-1)
