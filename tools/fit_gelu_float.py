#!/usr/bin/env python3
"""Derives the float polynomials of einlm::math::detail::gelu_erf_float and gelu_erf_derivative_float
(include/einlm/core/math.hpp) and checks them in float32 arithmetic.

Usage: python3 -m pip install numpy mpmath
       python3 tools/fit_gelu_float.py

GELU(x) = x·Φ(x), Φ the standard normal distribution function. In float, with a = |x|:
  * a < 1:  Φ(x) = ½ + x·S(x²), S a polynomial of degree 6 in u = x² fitted to (Φ(x) − ½)/x;
  * a ≥ 1:  Φ(−a) = e^{−a²/2}·t·P(t), t = 1/(1 + a), P a polynomial of degree 8 fitted to
            Φ(−a)·e^{a²/2}/t on a in [1, 14] (beyond 14, Φ(−a)·a is below float's smallest
            subnormal), and Φ(a) = 1 − Φ(−a).
GELU'(x) = Φ(x) + x·φ(x) takes one polynomial over the whole range instead (its value needs no
relative accuracy near 0, since GELU' is ½ there):
  * Φ(−a) = e^{−a²/2}·t·R(t), t = 1/(1 + 11/32·a), R a polynomial of degree 8 fitted to
            Φ(−a)·e^{a²/2}/t on a in [0, 14]. The scale 11/32 (exact in float) gives the smallest
            error among the degree-8 fits for scales from 5/16 to 3/8; with scale 1, as P has, one
            polynomial over [0, 14] does not reach float accuracy.
Each polynomial is fitted for relative error: weighted least squares at Chebyshev nodes,
reweighted toward the minimax solution (Lawson's iteration). The coefficients are then rounded to
float one at a time, from the highest degree down, refitting the lower ones after each rounding so
that they absorb it. The references are computed by mpmath at 40 digits.

Prints the coefficients (lowest degree first, as C++ float literals) and the worst relative error of
each polynomial evaluated by Horner's rule in float32 (as the C++ code does), in units of 2^-24.
The C++ functions were then checked on all 2^32 float inputs against ½·x·erfc(−x/√2) and
Φ(x) + x·φ(x) in double: GELU at most 6 ulp where the result is normal; GELU' at most 7.2 ulp
(5.9 with fused multiply-adds) of max(Φ(x), |x|·φ(x)) (GELU' itself crosses 0 near x = −0.752).
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 40
F32 = np.float32


def fit_relative(nodes, target, degree, iterations=30):
    """Coefficients (lowest first, each a float32 value) of the polynomial in `nodes` closest to
    `target` in relative error."""
    basis = np.vander(nodes, degree + 1, increasing=True)
    fixed = {}
    while len(fixed) <= degree:
        free = [j for j in range(degree + 1) if j not in fixed]
        rest = target - sum(basis[:, j] * fixed[j] for j in fixed)
        a = basis[:, free] / target[:, None]
        b = rest / target
        w = np.ones(len(nodes))
        for _ in range(iterations):
            c, *_ = np.linalg.lstsq(a * np.sqrt(w)[:, None], b * np.sqrt(w), rcond=None)
            w = w * (np.abs(a @ c - b) + 1e-30)
            w /= w.sum()
        highest = max(free)
        fixed[highest] = float(F32(dict(zip(free, c))[highest]))
    return np.array([fixed[j] for j in range(degree + 1)], dtype=F32)


def horner_f32(coefficients, v):
    r = np.full_like(v, coefficients[-1])
    for c in coefficients[-2::-1]:
        r = (r * v + c).astype(F32)
    return r


def chebyshev_nodes(lo, hi, n):
    k = np.arange(n)
    return (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / n)


def small_branch():
    def s_exact(u):
        x = mp.sqrt(mp.mpf(u))
        return 1 / mp.sqrt(2 * mp.pi) if x == 0 else (mp.ncdf(x) - mp.mpf(1) / 2) / x

    u = chebyshev_nodes(0.0, 1.0, 400)
    coefficients = fit_relative(u, np.array([float(s_exact(v)) for v in u]), 6)
    x = np.linspace(0.0, 1.0, 4001).astype(F32)
    ux = (x * x).astype(F32)
    exact = np.array([float(s_exact(float(v))) for v in ux])
    error = np.max(np.abs(horner_f32(coefficients, ux) / exact - 1))
    return coefficients, error


def large_branch():
    def p_exact(a):
        a = mp.mpf(a)
        return mp.ncdf(-a) * mp.exp(a * a / 2) * (1 + a)

    t = chebyshev_nodes(1 / 15, 1 / 2, 500)  # a in [1, 14]
    coefficients = fit_relative(t, np.array([float(p_exact(1 / v - 1)) for v in t]), 8)
    a = np.linspace(1.0, 14.0, 4001).astype(F32)
    tf = (F32(1) / (F32(1) + a)).astype(F32)
    r = (horner_f32(coefficients, tf) * tf).astype(F32)
    exact = np.array([float(mp.ncdf(-mp.mpf(float(v))) * mp.exp(mp.mpf(float(v)) ** 2 / 2)) for v in a])
    error = np.max(np.abs(r / exact - 1))
    return coefficients, error


def derivative_polynomial():
    scale = 11 / 32

    def r_exact(a):
        a = mp.mpf(a)
        return mp.ncdf(-a) * mp.exp(a * a / 2) * (1 + scale * a)

    t = chebyshev_nodes(1 / (1 + scale * 14), 1.0, 600)  # a in [0, 14]
    coefficients = fit_relative(t, np.array([float(r_exact((1 / v - 1) / scale)) for v in t]), 8)
    a = np.linspace(0.0, 14.0, 8001).astype(F32)
    tf = (F32(1) / (F32(1) + F32(scale) * a)).astype(F32)
    r = (horner_f32(coefficients, tf) * tf).astype(F32)
    exact = np.array([float(mp.ncdf(-mp.mpf(float(v))) * mp.exp(mp.mpf(float(v)) ** 2 / 2)) for v in a])
    error = np.max(np.abs(r / exact - 1))
    return coefficients, error


def main():
    for name, (coefficients, error) in (("S (|x| < 1, in x^2)", small_branch()),
                                        ("P (|x| >= 1, in t = 1/(1+|x|))", large_branch()),
                                        ("R (GELU', in t = 1/(1+11/32|x|))", derivative_polynomial())):
        print(f"{name}: worst relative error in float32 {error / 2**-24:.2f} x 2^-24")
        print("  " + ", ".join(f"{float(c):.9g}f" for c in coefficients))


if __name__ == "__main__":
    main()
