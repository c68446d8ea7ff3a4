// einlm/linalg.hpp — matrix multiplication: include this to call gemm(a, b, c, epilogue).
//
// Pulls in the backend-neutral interface (einlm/linalg/gemm.hpp), the CPU implementation always,
// and the CUDA implementation in translation units compiled by nvcc.
#pragma once

#include "einlm/core/config.hpp"
#include "einlm/linalg/gemm.hpp"
#include "einlm/linalg/gemm_cpu.hpp"
#if EINLM_HAS_CUDA
#include "einlm/linalg/gemm_cuda.cuh"
#endif
