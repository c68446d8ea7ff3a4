// benchmarks/compile_time/einops_patterns.cu — einops_patterns.cpp compiled by nvcc: the inputs are
// device tensors, so each of the 50 operations instantiates a CUDA kernel.
#include "einops_patterns.cpp"
