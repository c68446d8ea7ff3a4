// GPU tests of the one-launch optimizers optim::adamw_cuda (einlm/optim/adamw_cuda.cuh),
// optim::sgd_cuda and optim::adagrad_cuda (einlm/optim/sgd_cuda.cuh): three steps over parameters
// of several sizes (one element, odd lengths, more than one chunk), with a per-parameter weight
// decay and float or bf16 gradients, equal the host optimizer on the same values, state included,
// for AdamW, plain SGD, momentum with dampening, Nesterov momentum and AdaGrad with a
// learning-rate decay and an initial accumulator; each step is one launch; a forgotten queue
// leaves no state behind; errors name the parameter. A host optimizer's state moves to the device
// and back exactly, and the device twin then steps as the host one does. grad_norm_clipper
// (einlm/optim/clip_cuda.cuh) gives the host clipping's norm and scaled gradients, the same bits
// on every run, and leaves gradients alone under the bound or when the norm is not finite. Exits
// with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "einlm/optim/adamw.hpp"
#include "einlm/optim/adamw_cuda.cuh"
#include "einlm/optim/clip.hpp"
#include "einlm/optim/clip_cuda.cuh"
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

namespace {

// Two host steps, then the state moved to the device and back: exactly the host's; then one more
// step on each side from the moved state agrees with the host (the step after a resume).
template <class Host, class Device, class CompareState>
void check_state_transfer(Host cpu, const char* what, CompareState compare_state) {
  INFO(what);
  const std::vector<index_t> sizes = {3, 70'001};  // the second spans two chunks
  std::vector<tensor<float, dims<1>>> params, grads;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    params.emplace_back(sizes[i]);  // (N,)
    params.back() = uniform<float>(params.back().extents(), {8, i}, -1.0, 1.0);
    grads.emplace_back(sizes[i]);   // (N,)
  }
  auto fill_gradients = [&](int step) {
    for (std::size_t i = 0; i < sizes.size(); ++i)
      grads[i] = uniform<float>(grads[i].extents(), {9, static_cast<std::uint64_t>(10 * step) + i}, -0.5, 0.5);
  };
  for (int step = 1; step <= 2; ++step) {
    fill_gradients(step);
    cpu.begin_step(1e-2);
    for (std::size_t i = 0; i < sizes.size(); ++i) cpu.update("p" + std::to_string(i), params[i], grads[i]);
  }
  Device gpu(cpu);
  CHECK(gpu.step() == 2);
  const Host back = gpu.to_host();
  CHECK(back.step() == 2);
  CHECK(back.state().size() == cpu.state().size());
  compare_state(back, cpu);  // exact
  std::vector<tensor<float, dims<1>, device>> device_params;
  for (const auto& p : params) device_params.push_back(to_device(p));
  fill_gradients(3);
  cpu.begin_step(5e-3);
  gpu.begin_step(5e-3);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    cpu.update("p" + std::to_string(i), params[i], grads[i]);
    gpu.update("p" + std::to_string(i), device_params[i], to_device(grads[i]));
  }
  gpu.end_step();
  for (std::size_t i = 0; i < sizes.size(); ++i) test::check_device_close(device_params[i], params[i], 1e-6);
}

// Two flat float buffers equal bit for bit.
void check_same(const tensor<float, dims<1>>& a, const tensor<float, dims<1>>& b) {
  REQUIRE(a.size() == b.size());
  index_t differ = 0;
  for (index_t i = 0; i < a.size(); ++i) differ += a(i) != b(i);
  CHECK(differ == 0);
}

const auto same_buffers = [](const auto& a, const auto& b) {
  for (const auto& [name, buffer] : b.state())
    check_same(std::get<tensor<float, dims<1>>>(a.state().at(name)), std::get<tensor<float, dims<1>>>(buffer));
};

}  // namespace

TEST_CASE("device optimizers: the host's state moves to the device and back exactly, and steps on from there") {
  check_state_transfer<optim::adamw, optim::adamw_cuda>(
      optim::adamw({.weight_decay = 0.05}), "adamw", [](const auto& a, const auto& b) {
        CHECK(a.options().weight_decay == b.options().weight_decay);
        for (const auto& [name, m] : b.state()) {
          const auto& x = std::get<optim::adamw_moments<float>>(a.state().at(name));
          const auto& y = std::get<optim::adamw_moments<float>>(m);
          check_same(x.m, y.m);
          check_same(x.v, y.v);
        }
      });
  check_state_transfer<optim::sgd, optim::sgd_cuda>(optim::sgd({.momentum = 0.9, .dampening = 0.1}), "sgd", same_buffers);
  check_state_transfer<optim::sgd, optim::sgd_cuda>(optim::sgd(), "plain sgd", same_buffers);
  check_state_transfer<optim::adagrad, optim::adagrad_cuda>(optim::adagrad({.lr_decay = 0.01, .initial_accumulator_value = 0.1}),
                                                            "adagrad", same_buffers);
  // Double state has no place on the device.
  optim::adamw wide;
  tensor<double, dims<1>> p(dims<1>(4)), g(dims<1>(4));  // (4,) twice
  p = 1.0;
  g = 0.5;
  wide.begin_step(1e-3);
  wide.update("w", p, g);
  CHECK_THROWS_WITH_AS(optim::adamw_cuda{wide}, "adamw_cuda: parameter 'w' has double moments; the GPU optimizers keep float state",
                       value_error);
}

TEST_CASE("grad_norm_clipper: the host clipping's norm and gradients, the same bits on every run") {
  const std::vector<index_t> sizes = {1, 37, 4096, 200'003};
  auto make = [&](std::vector<tensor<float, dims<1>>>& host_f, tensor<bf16, dims<1>>& host_b, double scale) {
    host_f.clear();
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      host_f.emplace_back(sizes[i]);  // (N,)
      host_f.back() = uniform<float>(host_f.back().extents(), {11, i}, -scale, scale);
    }
    tensor<float, dims<1>> wide(dims<1>(1000));  // (1000,)
    wide = uniform<float>(wide.extents(), {12, 0}, -scale, scale);
    host_b = tensor<bf16, dims<1>>(cast<bf16>(wide));
  };
  for (const double max_norm : {1.0, 1e9, static_cast<double>(INFINITY)}) {
    INFO("max_norm ", max_norm);
    std::vector<tensor<float, dims<1>>> host_f;
    tensor<bf16, dims<1>> host_b;
    make(host_f, host_b, 0.5);
    std::vector<tensor<float, dims<1>, device>> dev_f;
    for (const auto& g : host_f) dev_f.push_back(to_device(g));
    auto dev_b = to_device(host_b);
    auto dev_b2 = to_device(host_b);
    std::vector<tensor<float, dims<1>, device>> dev_f2;
    for (const auto& g : host_f) dev_f2.push_back(to_device(g));

    const double host_norm = optim::clip_grad_norm_each(max_norm, [&](auto&& f) {
      for (auto& g : host_f) f(g);
      f(host_b);
    });
    optim::grad_norm_clipper clip;
    const double norm = clip(max_norm, [&](auto&& f) {
      for (auto& g : dev_f) f(g);
      f(dev_b);
    });
    CHECK(norm == doctest::Approx(host_norm).epsilon(1e-12));
    CHECK(clip.launches() == (norm > max_norm ? 3u : 2u));
    for (std::size_t i = 0; i < sizes.size(); ++i) test::check_device_close(dev_f[i], host_f[i], 1e-6);
    test::check_device_close(dev_b, host_b, 1e-2);  // one bf16 rounding of a product that may differ in its last bit
    if (!(norm > max_norm)) check_same(to_host(dev_f[3]), host_f[3]);  // untouched on both sides
    // A second run on equal inputs: the same bits.
    const double again = optim::clip_grad_norm_cuda_each(max_norm, [&](auto&& f) {
      for (auto& g : dev_f2) f(g);
      f(dev_b2);
    });
    CHECK(std::memcmp(&again, &norm, sizeof norm) == 0);
    check_same(to_host(dev_f2[3]), to_host(dev_f[3]));
  }
  // A NaN gives a NaN norm and scales nothing.
  tensor<float, dims<1>> h(dims<1>(100));  // (100,)
  h = uniform<float>(h.extents(), {13, 0}, 10.0, 20.0);
  h(7) = NAN;
  auto d = to_device(h);
  const double nan_norm = optim::clip_grad_norm_cuda_each(1.0, [&](auto&& f) { f(d); });
  CHECK(std::isnan(nan_norm));
  const auto after = to_host(d);
  CHECK(after(0) == h(0));
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm_cuda_each(0.0, [&](auto&& f) { f(d); }),
                       "clip_grad_norm_cuda: max_norm must be > 0, got 0", value_error);
  // No gradients: a norm of 0 and no launch.
  optim::grad_norm_clipper empty;
  CHECK(empty(1.0, [](auto&&) {}) == 0.0);
  CHECK(empty.launches() == 0u);
}
