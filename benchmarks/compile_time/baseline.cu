// benchmarks/compile_time/baseline.cu — baseline.cpp compiled by nvcc: the inputs are device
// tensors, so each of the 50 operations instantiates a CUDA kernel, as in einops_patterns.cu.
#include "baseline.cpp"
