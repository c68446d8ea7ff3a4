// CUDA benchmark of the executor's dedicated einops kernels over 64 MiB of fp32 (16 Mi elements),
// timed with CUDA events, against the same run's cudaMemcpyAsync device-to-device copy of the same
// input (the copy roof; bytes = read + written for both):
//   transpose_ab     rearrange "a b -> b a"              (4096, 4096)          shared-memory tiles
//   transpose_bhsd   rearrange "b h s d -> b s h d"      (16, 32, 512, 64)     16-byte rows
//   transpose_bchw   rearrange "b c h w -> b h w c"      (8, 64, 128, 256)     shared-memory tiles
//   reduce_last      reduce "a b -> a", sum             (4096, 4096)          a block per row
//   reduce_first     reduce "a b -> b", sum             (4096, 4096)          block columns
//   reduce_all       reduce "a b ->", sum               (4096, 4096)          blocks split one output
// Goal: each ≥ 90% of the copy's bandwidth. Before timing, each result is compared with the CPU
// executor's (exact for rearranges, relative 1e-3 for sums, at least 1e-3 absolute); a mismatch fails the run.
// Run by scripts/gpu-check; exits quietly without a device.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <cuda_runtime_api.h>

#include "bench_cuda_support.cuh"
#include "bench_support.hpp"
#include "einlm/einops.hpp"
#include "einlm/einlm.hpp"

using namespace einlm;

namespace {

index_t side() { return bench::smoke() ? 256 : 4096; }  // side² fp32 elements: 64 MiB

struct buffers {
  tensor<float, dims<1>, device> in, out, sums;
  tensor<float, extents<>, device> total;
  buffers() : in(dims<1>(side() * side())), out(dims<1>(side() * side())), sums(dims<1>(side())) {
    in = uniform<float>(in.extents(), {11, 0}, -1.0, 1.0);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static buffers& get() {
    static buffers b;
    return b;
  }
  double bytes() const { return static_cast<double>(in.bytes()); }
  // The buffers as tensors of the benchmarks' shapes.
  auto in2() const { return view<const float, dims<2>, cuda::std::layout_right, device>(in.data(), dims<2>(side(), side())); }
  auto in4(index_t a, index_t b, index_t c, index_t d) const {
    return view<const float, dims<4>, cuda::std::layout_right, device>(in.data(), dims<4>(a, b, c, d));
  }
  auto out2() { return view<float, dims<2>, cuda::std::layout_right, device>(out.data(), dims<2>(side(), side())); }
  auto out4(index_t a, index_t b, index_t c, index_t d) {
    return view<float, dims<4>, cuda::std::layout_right, device>(out.data(), dims<4>(a, b, c, d));
  }
};

// The device result against the CPU executor's on the same input: exits on a mismatch.
template <class Dev, class Host>
void verify(const char* name, const Dev& gpu, const Host& cpu, double tolerance) {
  EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  const auto h = to_host(gpu);
  for (index_t i = 0; i < cpu.size(); ++i) {
    const double a = h.data()[i], b = cpu.data()[i];
    if (!(std::abs(a - b) <= tolerance * std::max(1.0, std::abs(b)))) {
      std::fprintf(stderr, "%s: element %lld is %g, the CPU gives %g\n", name, static_cast<long long>(i), a, b);
      std::exit(1);
    }
  }
}

void copy_roof(benchmark::State& state) {
  auto& b = buffers::get();
  const cudaStream_t s = default_cuda_executor().stream();
  bench::timed_bytes(state, 2 * b.bytes(), [&] {
    EINLM_CUDA_CHECK(cudaMemcpyAsync(b.out.data(), b.in.data(), b.in.bytes(), cudaMemcpyDeviceToDevice, s));
  });
}

void transpose_ab(benchmark::State& state) {
  auto& b = buffers::get();
  auto out = b.out2();
  bench::timed_bytes(state, 2 * b.bytes(), [&] { assign(out, rearrange<"a b -> b a">(b.in2())); });
}

void transpose_bhsd(benchmark::State& state) {
  auto& b = buffers::get();
  const index_t s = side() * side() / (16 * 32 * 64);
  auto out = b.out4(16, s, 32, 64);
  bench::timed_bytes(state, 2 * b.bytes(), [&] { assign(out, rearrange<"b h s d -> b s h d">(b.in4(16, 32, s, 64))); });
}

void transpose_bchw(benchmark::State& state) {
  auto& b = buffers::get();
  const index_t w = side() * side() / (8 * 64 * 128);
  auto out = b.out4(8, 128, w, 64);
  bench::timed_bytes(state, 2 * b.bytes(), [&] { assign(out, rearrange<"b c h w -> b h w c">(b.in4(8, 64, 128, w))); });
}

void reduce_last(benchmark::State& state) {
  auto& b = buffers::get();
  bench::timed_bytes(state, b.bytes() + static_cast<double>(b.sums.bytes()), [&] { assign(b.sums, reduce<"a b -> a", "sum">(b.in2())); });
}

void reduce_all(benchmark::State& state) {
  auto& b = buffers::get();
  bench::timed_bytes(state, b.bytes(), [&] { assign(b.total, reduce<"a b ->", "sum">(b.in2())); });
}

void reduce_first(benchmark::State& state) {
  auto& b = buffers::get();
  bench::timed_bytes(state, b.bytes() + static_cast<double>(b.sums.bytes()), [&] { assign(b.sums, reduce<"a b -> b", "sum">(b.in2())); });
}

// Each kernel's result once, before timing.
void verify_all() {
  auto& b = buffers::get();
  const auto x = to_host(b.in);
  const auto x2 = view<const float, dims<2>, cuda::std::layout_right>(x.data(), dims<2>(side(), side()));
  const index_t s = side() * side() / (16 * 32 * 64), w = side() * side() / (8 * 64 * 128);
  const auto x_bhsd = view<const float, dims<4>, cuda::std::layout_right>(x.data(), dims<4>(16, 32, s, 64));
  const auto x_bchw = view<const float, dims<4>, cuda::std::layout_right>(x.data(), dims<4>(8, 64, 128, w));
  assign(b.out2(), rearrange<"a b -> b a">(b.in2()));
  verify("a b -> b a", b.out2(), eval(rearrange<"a b -> b a">(x2)), 0);
  assign(b.out4(16, s, 32, 64), rearrange<"b h s d -> b s h d">(b.in4(16, 32, s, 64)));
  verify("b h s d -> b s h d", b.out4(16, s, 32, 64), eval(rearrange<"b h s d -> b s h d">(x_bhsd)), 0);
  assign(b.out4(8, 128, w, 64), rearrange<"b c h w -> b h w c">(b.in4(8, 64, 128, w)));
  verify("b c h w -> b h w c", b.out4(8, 128, w, 64), eval(rearrange<"b c h w -> b h w c">(x_bchw)), 0);
  assign(b.sums, reduce<"a b -> a", "sum">(b.in2()));
  verify("reduce a b -> a", b.sums, eval(reduce<"a b -> a", "sum">(x2)), 1e-3);
  assign(b.sums, reduce<"a b -> b", "sum">(b.in2()));
  verify("reduce a b -> b", b.sums, eval(reduce<"a b -> b", "sum">(x2)), 1e-3);
  assign(b.total, reduce<"a b ->", "sum">(b.in2()));
  verify("reduce a b ->", b.total, eval(reduce<"a b ->", "sum">(x2)), 1e-3);
}

}  // namespace

BENCHMARK(copy_roof)->Name("copy_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(transpose_ab)->Name("transpose_ab_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(transpose_bhsd)->Name("transpose_bhsd_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(transpose_bchw)->Name("transpose_bchw_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(reduce_last)->Name("reduce_last_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(reduce_first)->Name("reduce_first_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(reduce_all)->Name("reduce_all_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_einops_cuda: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  EINLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("einlm CUDA einops benchmark on %s: %lld fp32 elements (%.0f MiB) per input\n", prop.name,
              static_cast<long long>(side() * side()), static_cast<double>(side() * side()) * 4 / (1 << 20));
  verify_all();
  return bench::run_and_summarise(
      argc, argv,
      {{"rearrange a b -> b a fp32 / device copy", "transpose_ab_f32/manual_time", "copy_f32/manual_time", 0.9},
       {"rearrange b h s d -> b s h d fp32 / device copy", "transpose_bhsd_f32/manual_time", "copy_f32/manual_time", 0.9},
       {"rearrange b c h w -> b h w c fp32 / device copy", "transpose_bchw_f32/manual_time", "copy_f32/manual_time", 0.9},
       {"reduce a b -> a (sum, last axis) fp32 / device copy", "reduce_last_f32/manual_time", "copy_f32/manual_time", 0.9},
       {"reduce a b -> b (sum, first axis) fp32 / device copy", "reduce_first_f32/manual_time", "copy_f32/manual_time", 0.9},
       {"reduce a b -> (sum, to a scalar) fp32 / device copy", "reduce_all_f32/manual_time", "copy_f32/manual_time", 0.9}});
}
