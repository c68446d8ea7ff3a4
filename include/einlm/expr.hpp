// einlm/expr.hpp — lazy expressions and their evaluation: include this to write `t = silu(a) * b`.
//
// Pulls in the expression nodes (element-wise, generators) and the executors: the CPU executor
// always, the CUDA executor in translation units compiled by nvcc.
#pragma once

#include "einlm/core/config.hpp"
#include "einlm/exec/cpu.hpp"
#include "einlm/expr/elementwise.hpp"
#include "einlm/expr/expression.hpp"
#include "einlm/expr/generators.hpp"
#if EINLM_HAS_CUDA
#include "einlm/exec/cuda.cuh"
#endif
