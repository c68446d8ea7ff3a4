// GPU tests of the one-launch optimizers optim::adamw_cuda (einlm/optim/adamw_cuda.cuh),
// optim::sgd_cuda and optim::adagrad_cuda (einlm/optim/sgd_cuda.cuh): three steps over parameters
// of several sizes (one element, odd lengths, more than one chunk), with a per-parameter weight
// decay and float or bf16 gradients, equal the host optimizer on the same values, state included,
// for AdamW, plain SGD, momentum with dampening, Nesterov momentum and AdaGrad with a
// learning-rate decay and an initial accumulator; each step is one launch; a forgotten queue
// leaves no state behind; errors name the parameter. Exits with 77 (skipped) when no device is
// present.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <variant>
#include <vector>

#include "einlm/optim/adamw.hpp"
#include "einlm/optim/adamw_cuda.cuh"
#include "einlm/optim/sgd.hpp"
#include "einlm/optim/sgd_cuda.cuh"
#include "support/cuda_compare.cuh"

using namespace einlm;

namespace {

// Runs three steps of the host and the device optimizer on the same parameters and gradients and
// compares the parameters, then the state through compare_state(cpu, gpu).
template <class Host, class Device, class CompareState>
void check_against_host(Host cpu, Device gpu, const char* state_name, CompareState compare_state) {
  const std::vector<index_t> sizes = {1, 37, 4096, 200'003};  // the last spans four chunks
  std::vector<tensor<float, dims<1>>> host_params;
  std::vector<tensor<float, dims<1>, device>> device_params;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    tensor<float, dims<1>> p(sizes[i]);  // (N,)
    p = uniform<float>(p.extents(), {5, i}, -1.0, 1.0);
    device_params.push_back(to_device(p));
    host_params.push_back(std::move(p));
  }
  for (int step = 1; step <= 3; ++step) {
    const double lr = 1e-2 / step;
    cpu.begin_step(lr);
    gpu.begin_step(lr);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::string name(1, 'p');  // "p" + to_string(i), which g++ 12 wrongly flags (-Wrestrict) here
      name += std::to_string(i);
      const double decay = i == 1 ? 0.0 : 0.01;  // a no-decay parameter
      tensor<float, dims<1>> g(sizes[i]);  // (N,)
      g = uniform<float>(g.extents(), {6, static_cast<std::uint64_t>(10 * step) + i}, -0.5, 0.5);
      if (i == 2) {
        // A bf16 gradient: the host sees the same rounded values.
        const tensor<bf16, dims<1>> g16(cast<bf16>(g));  // (N,)
        cpu.update(name, host_params[i], g16, decay);
        gpu.update(name, device_params[i], to_device(g16), decay);
      } else {
        cpu.update(name, host_params[i], g, decay);
        gpu.update(name, device_params[i], to_device(g), decay);
      }
    }
    gpu.end_step();
    CHECK(gpu.launches() == static_cast<std::uint64_t>(step));
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO(std::string(state_name), ": parameter ", i, " of ", sizes[i], " elements");
    test::check_device_close(device_params[i], host_params[i], 1e-6);
  }
  CHECK(gpu.state().size() == cpu.state().size());
  compare_state(cpu, gpu);
}

// SGD's momentum buffers and AdaGrad's sums: one float buffer per name on both sides.
const auto compare_buffers = [](const auto& cpu, const auto& gpu) {
  if (!cpu.state().empty())
    test::check_device_close(gpu.state().at("p3"), std::get<tensor<float, dims<1>, host>>(cpu.state().at("p3")), 1e-6);
};

}  // namespace

TEST_CASE("adamw_cuda: one launch per step, the host AdamW's values") {
  const optim::adamw_options o{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  check_against_host(optim::adamw(o), optim::adamw_cuda(o), "adamw", [](const auto& cpu, const auto& gpu) {
    test::check_device_close(gpu.state().at("p3").v, std::get<optim::adamw_moments<float>>(cpu.state().at("p3")).v, 1e-7);
  });
}

TEST_CASE("sgd_cuda: one launch per step, the host SGD's values") {
  check_against_host(optim::sgd(), optim::sgd_cuda(), "plain", compare_buffers);
  const optim::sgd_options momentum{.momentum = 0.9, .dampening = 0.1};
  check_against_host(optim::sgd(momentum), optim::sgd_cuda(momentum), "momentum", compare_buffers);
  const optim::sgd_options nesterov{.momentum = 0.9, .nesterov = true};
  check_against_host(optim::sgd(nesterov), optim::sgd_cuda(nesterov), "nesterov", compare_buffers);
}

TEST_CASE("adagrad_cuda: one launch per step, the host AdaGrad's values") {
  const optim::adagrad_options o{.lr_decay = 0.05, .initial_accumulator_value = 0.1};
  check_against_host(optim::adagrad(o), optim::adagrad_cuda(o), "adagrad", compare_buffers);
}

TEST_CASE("sgd_cuda and adagrad_cuda: a forgotten queue leaves no state; errors name the parameter") {
  tensor<float, dims<1>, device> p(dims<1>(4)), g(dims<1>(4)), g5(dims<1>(5));  // (4,), (4,), (5,)
  p = 1.0f;
  g = 0.5f;
  optim::adagrad_cuda gpu({.initial_accumulator_value = 0.25});
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g), "adagrad_cuda: call begin_step(lr) before update()", value_error);
  gpu.begin_step(1e-3);
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g5), "adagrad_cuda: parameter 'w' has shape (4,) but its gradient has shape (5,)",
                       shape_error);
  gpu.update("w", p, g);
  CHECK(gpu.state().size() == 1);
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g), "adagrad_cuda: parameter 'w' is already queued in this step", value_error);
  gpu.begin_step(1e-3);  // the queued update is forgotten, and the buffer it would have set
  CHECK(gpu.state().empty());
  gpu.update("w", p, g);
  gpu.end_step();
  EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  tensor<float, dims<1>> sum(dims<1>(4));  // (4,)
  EINLM_CUDA_CHECK(cudaMemcpy(sum.data(), gpu.state().at("w").data(), sum.bytes(), cudaMemcpyDeviceToHost));
  CHECK(sum(0) == doctest::Approx(0.25 + 0.25));  // initial value + g²
  tensor<float, dims<1>, device> p5(dims<1>(5));  // (5,)
  gpu.begin_step(1e-3);
  CHECK_THROWS_WITH_AS(gpu.update("w", p5, g5), doctest::Contains("parameter 'w' changed its size (5 elements now)"), shape_error);
  CHECK_THROWS_AS(gpu.begin_step(NAN), value_error);
  CHECK_THROWS_AS(optim::sgd_cuda({.momentum = -1.0}), value_error);
  CHECK_THROWS_AS(optim::sgd_cuda({.dampening = 0.5, .nesterov = true}), value_error);
  CHECK_THROWS_AS(optim::adagrad_cuda({.eps = -1.0}), value_error);
}

TEST_CASE("adamw_cuda: errors name the parameter") {
  optim::adamw_cuda gpu;
  tensor<float, dims<1>, device> p(dims<1>(4)), g(dims<1>(4)), g5(dims<1>(5));  // (4,), (4,), (5,)
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g), "adamw_cuda: call begin_step(lr) before update()", value_error);
  gpu.begin_step(1e-3);
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g5), "adamw_cuda: parameter 'w' has shape (4,) but its gradient has shape (5,)",
                       shape_error);
  gpu.update("w", p, g);
  CHECK_THROWS_WITH_AS(gpu.update("w", p, g), "adamw_cuda: parameter 'w' is already queued in this step", value_error);
  gpu.end_step();
  tensor<float, dims<1>, device> p5(dims<1>(5));  // (5,)
  gpu.begin_step(1e-3);
  CHECK_THROWS_WITH_AS(gpu.update("w", p5, g5), doctest::Contains("parameter 'w' changed its size (5 elements now)"), shape_error);
  CHECK_THROWS_AS(gpu.begin_step(NAN), value_error);
  CHECK_THROWS_AS(optim::adamw_cuda({.beta1 = 1.0}), value_error);
}
