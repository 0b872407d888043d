"""What bisnn-pyro uses of other libraries beyond their documented APIs, one module per library.

Every private name, undocumented attribute or internal hook the library relies on is reached
through these modules only, so an upgrade that moves one breaks a named test
(``tests/test_adapters.py``) instead of a training run; ``pyproject.toml`` bounds each library's
version to the releases tested here.
"""
