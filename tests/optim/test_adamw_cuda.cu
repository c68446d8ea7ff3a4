// GPU tests of optim::adamw_cuda (einlm/optim/adamw_cuda.cuh): three steps over parameters of
// several sizes (one element, odd lengths, more than one chunk), with a per-parameter weight
// decay and float or bf16 gradients, equal the host optim::adamw on the same values; each step is
// one launch; errors name the parameter. Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "einlm/optim/adamw.hpp"
#include "einlm/optim/adamw_cuda.cuh"
#include "support/cuda_compare.cuh"

using namespace einlm;

TEST_CASE("adamw_cuda: one launch per step, the host AdamW's values") {
  const optim::adamw_options o{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  const std::vector<index_t> sizes = {1, 37, 4096, 200'003};  // the last spans four chunks
  std::vector<tensor<float, dims<1>>> host_params;
  std::vector<tensor<float, dims<1>, device>> device_params;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    tensor<float, dims<1>> p(sizes[i]);  // (N,)
    p = uniform<float>(p.extents(), {5, i}, -1.0, 1.0);
    device_params.push_back(to_device(p));
    host_params.push_back(std::move(p));
  }
  optim::adamw host(o);
  optim::adamw_cuda gpu(o);
  for (int step = 1; step <= 3; ++step) {
    const double lr = 1e-2 / step;
    host.begin_step(lr);
    gpu.begin_step(lr);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::string name = "p" + std::to_string(i);
      const double decay = i == 1 ? 0.0 : o.weight_decay;  // a no-decay parameter
      tensor<float, dims<1>> g(sizes[i]);  // (N,)
      g = uniform<float>(g.extents(), {6, static_cast<std::uint64_t>(10 * step) + i}, -0.5, 0.5);
      if (i == 2) {
        // A bf16 gradient: the host sees the same rounded values.
        const tensor<bf16, dims<1>> g16(cast<bf16>(g));  // (N,)
        host.update(name, host_params[i], g16, decay);
        gpu.update(name, device_params[i], to_device(g16), decay);
      } else {
        host.update(name, host_params[i], g, decay);
        gpu.update(name, device_params[i], to_device(g), decay);
      }
    }
    gpu.end_step();
    CHECK(gpu.launches() == static_cast<std::uint64_t>(step));
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("parameter ", i, " of ", sizes[i], " elements");
    test::check_device_close(device_params[i], host_params[i], 1e-6);
  }
  CHECK(gpu.state().size() == sizes.size());
  test::check_device_close(gpu.state().at("p3").v, std::get<optim::adamw_moments<float>>(host.state().at("p3")).v, 1e-7);
}

TEST_CASE("adamw_cuda: errors name the parameter") {
  optim::adamw_cuda gpu;
  tensor<float, dims<1>, device> p(dims<1>(4)), g(dims<1>(4)), g5(dims<1>(5));  // (4,), (4,), (5,)
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g), "adamw_cuda: call begin_step(lr) before update()", value_error);
  gpu.begin_step(1e-3);
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g5), "adamw_cuda: parameter 'w' has shape (4,) but its gradient has shape (5,)",
                       shape_error);
  gpu.update("w", p, g);
  gpu.end_step();
  tensor<float, dims<1>, device> p5(dims<1>(5));  // (5,)
  gpu.begin_step(1e-3);
  CHECK_THROWS_WITH_AS(gpu.update("w", p5, g5), doctest::Contains("parameter 'w' changed its size (5 elements now)"), shape_error);
  CHECK_THROWS_AS(gpu.begin_step(NAN), value_error);
  CHECK_THROWS_AS(optim::adamw_cuda({.beta1 = 1.0}), value_error);
}
