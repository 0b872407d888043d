"""Shape broadcasting in plain Python agrees with torch.broadcast_shapes."""

import pytest
import torch

from bisnn_pyro.models.shapes import broadcast_shape

CASES = [
    ((), ()),
    ((3,), ()),
    ((256, 256), (256, 256)),
    ((1, 4), (3, 1)),
    ((2, 1, 5), (4, 1), (5,)),
    ((0,), (1,)),
    ((1, 0), (3, 1)),
    ((4, 40, 256), (40, 256), ()),
]


@pytest.mark.parametrize("shapes", CASES)
def test_broadcast_shape_agrees_with_torch(shapes):
    assert broadcast_shape(*[torch.Size(s) for s in shapes]) == torch.broadcast_shapes(*shapes)


@pytest.mark.parametrize("shapes", [((3,), (4,)), ((2, 3), (3, 3)), ((0,), (2,))])
def test_shapes_that_do_not_broadcast_are_named(shapes):
    with pytest.raises(RuntimeError):
        torch.broadcast_shapes(*shapes)
    with pytest.raises(RuntimeError, match="do not broadcast"):
        broadcast_shape(*shapes)
