"""Finite-difference gradient checks in float64, for the project's layers and yours:

    from arraynet.testing import check_gradients
    check_gradients(MyLayer(...), input_shape=(8, 8, 3))   # AssertionError when wrong

The check perturbs arrays in place, so it runs on the numpy backend; its code lives with
that backend (`arraynet/backends/numpy_gradcheck.py`).
"""

from arraynet.backends.numpy_gradcheck import check_gradients, numeric_vs_analytic

__all__ = ["check_gradients", "numeric_vs_analytic"]
