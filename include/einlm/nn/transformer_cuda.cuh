// einlm/nn/transformer_cuda.cuh — the CS336 transformer language model on the GPU: a device copy of
// an nn::transformer_lm's weights, its forward pass (logits) and one forward + backward pass that
// returns the loss and accumulates every gradient on the device. nvcc only.
//
//   nn::transformer_lm<float> host(config, /*seed=*/42);       // built, initialised or loaded on the host
//   nn::transformer_lm_cuda<float> model(host);                 // its weights copied to the device
//   optim::adamw_cuda opt(options);
//   model.zero_grad();
//   double loss = model.forward_backward(inputs, targets);     // host token ids (B, S), twice
//   opt.begin_step(lr);
//   model.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) { opt.update(name, w, g); });
//   opt.end_step();
//   model.store_parameters(host);                               // back to the host (checkpoints, generation)
//   auto logits = model.logits(tokens);                         // (B, S, V), a device tensor
//   auto ids = nn::generate(model, prompt, {.max_new_tokens = 100});   // decoding with a device KV cache
//
// Contract: what nn::transformer_lm<T>::logits and forward_backward compute (nn/transformer.hpp),
// for dense models of the CS336 architecture (RMSNorm, RoPE, SwiGLU, no biases; grouped-query
// heads, optional QK-norm, tied or untied head), T float or bf16, head dimension at most 256
// (the fused attention's). Mixture-of-experts layers are refused with a config_error (their
// backward pass is not on the GPU yet), and so is a configuration the host model refuses.
// Parameters and gradients are device tensors under the host model's names, visited in its order,
// so optim::adamw_cuda and checkpoints (through store_parameters) see the same names.
//
// Each layer is the host model's sequence of operations on device tensors, on the default CUDA
// executor's stream:
//   n1 = fused_rms_norm(x, ln1); q, k, v = einsum projections (one GEMM each) split into heads by
//   rearrange (B, H, S, Dh); [fused_rms_norm per head: QK-norm]; fused_rope at positions 0 … S−1;
//   fused_attention_forward (causal, flash-style, lse kept); heads merged by rearrange; the output
//   projection; h = x + o; n2 = fused_rms_norm(h, ln2); f1, f3 = einsums; g = silu(f1) ⊙ f3 (one
//   executor launch); y = einsum(g, w2); x' = h + y. Then the final norm, the LM head (an einsum)
//   and fused_cross_entropy_with_grad. The backward pass runs the same steps in reverse with the
//   fused backward kernels; every weight gradient is added into gradients() by its GEMM
//   (einsum_accumulate, beta = 1), and the embedding's adjoint adds each token's positions into
//   its row in position order (positions grouped by token on the host, one thread per column of a
//   token's row: no atomics), so a step gives the same bits on every run.
//
// Token ids are host arrays (what token files and get_batch give), checked on the host (a
// value_error naming the id and its position outside [0, vocab_size), a shape_error past
// context_length) and uploaded with the step. The activations kept for the backward pass live on
// the device between its two halves; kept_activation_bytes() reports them. The loss is summed on
// the host from each row's log-sum-exp (fused_cross_entropy_with_grad), so forward_backward
// synchronises once per call.
//
// Generation: make_cache(B) allocates a device_kv_cache (keys and values (B, K, context_length,
// Dh) per layer on the device, lengths on the host: nn::basic_kv_cache), and last_logits(new_tokens,
// cache) continues each sequence by its own new tokens — transformer_lm::last_logits' contract,
// so nn::generate and generate_batch (nn/generate.hpp) decode on the device with the same
// determinism rule. The new positions of every sequence run as one packed batch (1, N): each
// layer writes their keys and values into their sequences' cache rows and attends through
// fused_cached_attention; only each sequence's last row goes through the final norm and the LM
// head, and those logits (B, V) come back to the host as float for sampling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/linalg/gemm_cuda.cuh"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/cuda_attention.cuh"
#include "einlm/nn/cuda_kernels.cuh"
#include "einlm/nn/transformer.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/nn/transformer_cuda.cuh must be compiled by nvcc");

namespace einlm::nn {

/// The weights of one transformer block on the device (see block_parameters).
template <class T>
struct device_block_parameters {
  tensor<T, dims<1>, device> ln1, ln2;                                    // (D,) each
  tensor<T, dims<2>, device> q_proj, k_proj, v_proj, output_proj;         // (H·Dh, D), (K·Dh, D) twice, (D, H·Dh)
  tensor<T, dims<1>, device> q_norm, k_norm;                              // (Dh,) each, when qk_norm
  tensor<T, dims<2>, device> w1, w2, w3;                                  // (F, D), (D, F), (F, D)
};

/// Every weight of a transformer_lm_cuda (or its gradients), by CS336 name, in transformer_parameters' order.
template <class T>
struct device_transformer_parameters {
  transformer_config config;
  tensor<T, dims<2>, device> token_embeddings;                            // (V, D)
  std::vector<device_block_parameters<T>> layers;
  tensor<T, dims<1>, device> ln_final;                                    // (D,)
  tensor<T, dims<2>, device> lm_head;                                     // (V, D); empty when tied

  device_transformer_parameters() = default;

  /// Device copies of a host model's tensors (weights or gradients).
  explicit device_transformer_parameters(const transformer_parameters<T>& source) : config(source.config) {
    layers.resize(source.layers.size());
    std::vector<const void*> sources;
    source.for_each_parameter([&](const std::string&, const auto& t) { sources.push_back(&t); });
    std::size_t i = 0;
    for_each_parameter([&](const std::string&, auto& t) {
      using D = std::remove_reference_t<decltype(t)>;
      t = to_device(*static_cast<const tensor<typename D::value_type, typename D::extents_type, host>*>(sources[i++]));
    });
  }

  /// f(name, tensor) for every parameter, in transformer_parameters' order.
  template <class F>
  void for_each_parameter(F&& f) {
    detail::visit_transformer_parameters(*this, f);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    detail::visit_transformer_parameters(*this, f);
  }
};

/// The KV cache of a transformer_lm_cuda: per layer, keys and values (B, K, context_length, Dh)
/// on the device; the sequences' lengths on the host.
template <class T>
using device_kv_cache = basic_kv_cache<tensor<T, dims<4>, device>>;

namespace detail::device_lm {

/// cache[seq[r], g, pos[r], :] = rows[0, g, r, :] for the N packed rows of rows (1, G, N, D) and a
/// cache (B, G, C, D).
template <class T>
__global__ void store_cache_rows_kernel(const T* __restrict__ rows, const std::int64_t* __restrict__ seq,
                                        const std::int64_t* __restrict__ pos, T* __restrict__ cache, index_t G, index_t N,
                                        index_t C, index_t D) {
  const index_t total = G * N * D;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t d = e % D, r = e / D % N, g = e / D / N;
    cache[((seq[r] * G + g) * C + pos[r]) * D + d] = rows[e];
  }
}

/// out[n, :] = table[ids[n], :] for N rows of width D.
template <class T>
__global__ void gather_rows_kernel(const T* __restrict__ table, const std::int64_t* __restrict__ ids, T* __restrict__ out,
                                   index_t N, index_t D) {
  const index_t total = N * D;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t n = e / D, d = e - n * D;
    out[e] = table[ids[n] * D + d];
  }
}

/// For run u of a token_runs (blockIdx.x) and column d (blockIdx.y · blockDim.x + threadIdx.x): row[d] += Σ dx[order[i], d] over the run's
/// positions in order, summed in float (float storage: the same additions, in the same order, as
/// the host's row += dx, position by position) and rounded once.
template <class T>
__global__ void scatter_runs_kernel(T* __restrict__ table, const std::int64_t* __restrict__ order,
                                    const std::int64_t* __restrict__ starts, const std::int64_t* __restrict__ ids,
                                    const T* __restrict__ dx, index_t D) {
  const index_t d = static_cast<index_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  const index_t u = blockIdx.x, first = starts[u], last = starts[u + 1];
  T* row = table + ids[order[first]] * D;
  float acc = convert<float>(row[d]);
  for (index_t i = first; i < last; ++i) acc += convert<float>(dx[order[i] * D + d]);
  row[d] = convert<T>(acc);
}

}  // namespace detail::device_lm

template <class T = float>
class transformer_lm_cuda {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>,
                "transformer_lm_cuda: parameters are float or bf16 (the fused kernels' storage types)");

 public:
  using value_type = T;

  /// The host model `model` (its configuration and weights) on the device, with zero gradients.
  explicit transformer_lm_cuda(const transformer_lm<T>& model)
      : config_(checked(model.model_config())), params_(model.parameters()), grads_(model.parameters()) {
    zero_grad();
  }

  const transformer_config& config() const { return config_; }
  device_transformer_parameters<T>& parameters() { return params_; }
  const device_transformer_parameters<T>& parameters() const { return params_; }
  device_transformer_parameters<T>& gradients() { return grads_; }
  const device_transformer_parameters<T>& gradients() const { return grads_; }

  /// f(name, weight) for every parameter, in the host model's order.
  template <class F>
  void for_each_parameter(F&& f) {
    params_.for_each_parameter(f);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    params_.for_each_parameter(f);
  }

  /// f(name, weight, gradient) for every parameter (what an optimizer step visits).
  template <class F>
  void for_each_parameter_and_gradient(F&& f) {
    detail::visit_weights_and_gradients(params_, grads_, f);
  }

  /// Sets every gradient to zero (on the stream).
  void zero_grad() {
    grads_.for_each_parameter([&](const std::string&, auto& g) {
      if (g.size() > 0) EINLM_CUDA_CHECK(cudaMemsetAsync(g.data(), 0, g.bytes(), stream()));
    });
  }

  /// Copies `model`'s weights (a model of the same configuration) to the device.
  void load_parameters(const transformer_lm<T>& model) { copy_all(model.parameters(), params_, "load_parameters"); }
  /// Copies the weights into `model` (a model of the same configuration): for checkpoints and generation.
  void store_parameters(transformer_lm<T>& model) const { copy_all(params_, model.parameters(), "store_parameters"); }
  /// Copies the gradients into `model`'s gradients().
  void store_gradients(transformer_lm<T>& model) const { copy_all(grads_, model.gradients(), "store_gradients"); }

  /// Next-token logits for host token ids (B, S), as a new device tensor (B, S, V).
  template <class I>
  tensor<T, dims<3>, device> logits(const I& tokens) {
    return forward(tokens, /*keep=*/false);
  }

  /// Mean cross-entropy of the next-token predictions for `inputs` (B, S) against `targets` (B, S)
  /// (host token ids), plus z_loss · mean(logsumexp²); accumulates the gradient into gradients().
  template <class I, class J>
  double forward_backward(const I& inputs, const J& targets, double z_loss = 0.0) {
    check_targets(inputs, targets);
    const auto target_ids = upload_ids(targets, "target", /*check_length=*/false);  // (B, S)
    auto logits = forward(inputs, /*keep=*/true);                                    // (B, S, V)
    kept_bytes_ = logits.bytes() + final_x_.bytes() + final_n_.bytes();
    for (const auto& a : acts_) kept_bytes_ += a.bytes();
    auto [loss, dlogits] = fused_cross_entropy_with_grad(logits, target_ids, z_loss);  // (B, S, V)
    logits = tensor<T, dims<3>, device>();
    backward(std::move(dlogits));
    return loss;
  }

  /// Mean cross-entropy of the next-token predictions for `inputs` against `targets` (host token
  /// ids (B, S), twice), plus z_loss · mean(logsumexp²), without a backward pass (validation).
  template <class I, class J>
  double loss(const I& inputs, const J& targets, double z_loss = 0.0) {
    check_targets(inputs, targets);
    const auto target_ids = upload_ids(targets, "target", /*check_length=*/false);  // (B, S)
    const auto logits = forward(inputs, /*keep=*/false);                            // (B, S, V)
    return fused_cross_entropy_with_grad(logits, target_ids, z_loss).loss;
  }

  /// Sets the device weights to `master`'s (a host model of the same configuration), converted to
  /// T (to bf16: rounded to nearest even, as nn::convert_parameters rounds): mixed precision's
  /// working copy refreshed from float master weights.
  template <class U>
  void load_converted_parameters(const transformer_lm<U>& master) {
    if constexpr (std::is_same_v<U, T>) {
      load_parameters(master);
    } else {
      auto& staging = host_staging();
      detail::convert_tensors<U, T>([&](auto& f) { master.parameters().for_each_parameter(f); },
                                    [&](auto& f) { staging.for_each_parameter(f); }, "convert_parameters");
      copy_all(staging, params_, "convert_parameters");
    }
  }

  /// Sets `master`'s gradients to the device gradients, converted (bf16 → float is exact).
  template <class U>
  void store_converted_gradients(transformer_lm<U>& master) const {
    if constexpr (std::is_same_v<U, T>) {
      store_gradients(master);
    } else {
      auto& staging = host_staging();
      copy_all(grads_, staging, "convert_gradients");
      detail::convert_tensors<T, U>([&](auto& f) { staging.for_each_parameter(f); },
                                    [&](auto& f) { master.gradients().for_each_parameter(f); }, "convert_gradients");
    }
  }

  /// An empty KV cache for `batch` sequences of up to context_length positions, on the device.
  device_kv_cache<T> make_cache(index_t batch) const {
    device_kv_cache<T> c;
    c.sequences = batch;
    c.positions = config_.context_length;
    const dims<4> shape(batch, config_.kv_heads(), config_.context_length, config_.head_dim());
    for (std::int64_t i = 0; i < config_.num_layers; ++i) {
      c.k.emplace_back(shape);  // (B, K, C, Dh)
      c.v.emplace_back(shape);  // (B, K, C, Dh)
    }
    return c;
  }

  /// The logits (B, V), on the host as float, of each sequence's last new position when sequence b
  /// of `cache` continues by new_tokens[b] (possibly empty: its row is 0) — transformer_lm::last_logits.
  /// The cache grows by the new positions. Errors as the host model's: a token list count other
  /// than the cache's batch or a sequence past context_length (shape_error), an id outside the
  /// vocabulary (value_error), each naming the sequence.
  tensor<float, dims<2>> last_logits(std::span<const std::vector<std::int64_t>> new_tokens, device_kv_cache<T>& cache) {
    const index_t V = config_.vocab_size, D = config_.d_model, K = config_.kv_heads(), Dh = config_.head_dim();
    if (static_cast<std::int64_t>(cache.k.size()) != config_.num_layers)
      throw shape_error(einlm::detail::concat("transformer_lm_cuda: the KV cache has ", cache.k.size(), " layers, the model ",
                                              config_.num_layers));
    for (std::size_t i = 0; i < cache.k.size(); ++i) {
      const index_array<4> want{cache.batch(), K, config_.context_length, Dh};
      if (to_array(cache.k[i].extents()) != want || to_array(cache.v[i].extents()) != want)
        throw shape_error(einlm::detail::concat("transformer_lm_cuda: the KV cache's layer ", i, " holds ",
                                                shape_string(cache.k[i].extents()), ", the model needs (", want[0], ", ",
                                                want[1], ", ", want[2], ", ", want[3], ")"));
    }
    const auto packed = detail::pack_ragged(new_tokens, cache, V, "transformer_lm_cuda");
    tensor<float, dims<2>> out(cache.batch(), V);  // (B, V)
    out = 0.0f;
    const index_t N = packed.size(), R = static_cast<index_t>(packed.last_rows.size());
    if (N == 0) return out;
    // One upload: ids (N,), sequences (N,), positions (N,), last rows (R,).
    std::vector<std::int64_t> table(static_cast<std::size_t>(3 * N + R));
    for (std::size_t b = 0; b + 1 < packed.offsets.size(); ++b)
      for (index_t r = packed.offsets[b]; r < packed.offsets[b + 1]; ++r) {
        table[static_cast<std::size_t>(r)] = packed.ids(0, r);
        table[static_cast<std::size_t>(N + r)] = static_cast<std::int64_t>(b);
        table[static_cast<std::size_t>(2 * N + r)] = packed.positions(r);
      }
    for (index_t i = 0; i < R; ++i) table[static_cast<std::size_t>(3 * N + i)] = packed.last_rows[static_cast<std::size_t>(i)];
    tensor<std::int64_t, dims<1>, device> uploaded(dims<1>(3 * N + R));  // (3N + R,)
    EINLM_CUDA_CHECK(cudaMemcpyAsync(uploaded.data(), table.data(), uploaded.bytes(), cudaMemcpyHostToDevice, stream()));
    tensor<std::int64_t, dims<1>, device> seq{dims<1>(N)}, pos{dims<1>(N)};  // (N,) twice
    EINLM_CUDA_CHECK(cudaMemcpyAsync(seq.data(), uploaded.data() + N, seq.bytes(), cudaMemcpyDeviceToDevice, stream()));
    EINLM_CUDA_CHECK(cudaMemcpyAsync(pos.data(), uploaded.data() + 2 * N, pos.bytes(), cudaMemcpyDeviceToDevice, stream()));
    EINLM_CUDA_CHECK(cudaStreamSynchronize(stream()));  // `table` is released on return

    tensor<T, dims<3>, device> x(dims<3>(1, N, D));  // (1, N, D)
    gather_rows(params_.token_embeddings, uploaded.data(), x, N);
    for (std::size_t i = 0; i < params_.layers.size(); ++i) {
      block_activations scratch;
      auto& kc = cache.k[i];
      auto& vc = cache.v[i];
      x = block_forward(params_.layers[i], std::move(x), scratch, pos, [&](const auto& q, const auto& k, const auto& v) {
        // The new rows' keys and values into their sequences' cache rows, then attention in place.
        const auto blocks = detail::fused::elementwise_blocks(K * N * Dh);
        detail::device_lm::store_cache_rows_kernel<T><<<blocks, 256, 0, stream()>>>(k.data(), seq.data(), pos.data(), kc.data(),
                                                                                    K, N, kc.extent(2), Dh);
        detail::device_lm::store_cache_rows_kernel<T><<<blocks, 256, 0, stream()>>>(v.data(), seq.data(), pos.data(), vc.data(),
                                                                                    K, N, vc.extent(2), Dh);
        EINLM_CUDA_CHECK(cudaGetLastError());
        return fused_cached_attention(q, kc, vc, seq, pos);  // (1, H, N, Dh), (1, H, N)
      });                                                    // (1, N, D)
    }
    detail::advance(cache, packed);
    // The final norm and the head on each sequence's last new row only.
    tensor<T, dims<3>, device> last(dims<3>(1, R, D));  // (1, R, D)
    gather_rows(x, uploaded.data() + 3 * N, last, R);
    const auto n = fused_rms_norm(last, params_.ln_final, config_.norm_eps);  // (1, R, D)
    const auto logits = einsum<"b s d, v d -> b s v">(n, head_weight());       // (1, R, V)
    const auto host_logits = to_host(logits);                                  // (1, R, V)
    for (index_t i = 0; i < R; ++i) {
      const T* row = host_logits.data() + i * V;
      float* dst = out.data() + packed.last_sequence[static_cast<std::size_t>(i)] * V;
      for (index_t j = 0; j < V; ++j) dst[j] = convert<float>(row[j]);
    }
    return out;
  }

  /// Bytes of the activations the last forward_backward kept on the device, the logits included.
  std::size_t kept_activation_bytes() const { return kept_bytes_; }

 private:
  /// What one block keeps for its backward pass (device tensors).
  struct block_activations {
    tensor<T, dims<3>, device> x, n1;                // (B, S, D) block input, ln1(x)
    tensor<T, dims<4>, device> q_raw, k_raw;         // (B, H, S, Dh), (B, K, S, Dh) before RoPE (QK-norm only)
    tensor<T, dims<4>, device> q, k, v;              // (B, H, S, Dh), (B, K, S, Dh) twice: attention's inputs
    tensor<T, dims<4>, device> o;                    // (B, H, S, Dh) attention output
    tensor<float, dims<3>, device> lse;              // (B, H, S)
    tensor<T, dims<3>, device> merged;               // (B, S, H·Dh)
    tensor<T, dims<3>, device> h, n2;                // (B, S, D) after the attention residual, ln2(h)
    tensor<T, dims<3>, device> f1, f3, g;            // (B, S, F) w1 n2, w3 n2, silu(f1) ⊙ f3

    std::size_t bytes() const {
      std::size_t n = lse.bytes();
      for (const auto* t : {&x, &n1, &merged, &h, &n2, &f1, &f3, &g}) n += t->bytes();
      for (const auto* t : {&q_raw, &k_raw, &q, &k, &v, &o}) n += t->bytes();
      return n;
    }
  };

  static cudaStream_t stream() { return default_cuda_executor().stream(); }

  template <class I, class J>
  static void check_targets(const I& inputs, const J& targets) {
    const auto t = as_view(targets);
    const auto in = as_view(inputs);
    static_assert(decltype(t)::rank() == 2 && decltype(in)::rank() == 2,
                  "transformer_lm_cuda: inputs and targets are (batch, sequence)");
    if (t.extent(0) != in.extent(0) || t.extent(1) != in.extent(1))
      throw shape_error(einlm::detail::concat("transformer_lm_cuda: targets of shape ", shape_string(t.extents()),
                                              " do not match inputs of shape ", shape_string(in.extents())));
  }

  /// The host tensors that conversions between T and another storage type pass through.
  transformer_parameters<T>& host_staging() const {
    if (staging_.layers.size() != params_.layers.size()) staging_ = transformer_parameters<T>(config_);
    return staging_;
  }

  static const transformer_config& checked(const moe_config& m) {
    if (m.num_experts > 0)
      throw config_error(
          "transformer_lm_cuda: mixture-of-experts layers do not run on the GPU yet (their backward pass is host-only)");
    if (m.base.head_dim() > detail::flash::max_head_dim)
      throw config_error(einlm::detail::concat("transformer_lm_cuda: head_dim ", m.base.head_dim(),
                                               " exceeds the fused attention's ", detail::flash::max_head_dim));
    return m.base;
  }

  /// Copies every tensor of `from` into the tensor of `to` with the same name (host to device or
  /// back). Names and shapes are all checked first: on a mismatch (a shape_error naming the
  /// tensor) nothing has been copied.
  template <class From, class To>
  void copy_all(const From& from, To& to, const char* who) const {
    std::vector<std::pair<std::string, const void*>> sources;
    from.for_each_parameter([&](const std::string& name, const auto& t) { sources.emplace_back(name, &t); });
    const auto source_of = [&](std::size_t i, const std::string& name, const auto& t) -> const auto& {
      if (i >= sources.size() || sources[i].first != name)
        throw shape_error(einlm::detail::concat("transformer_lm_cuda::", who, ": parameter ", name,
                                                " has no counterpart (the models' configurations differ)"));
      using Dst = std::remove_cvref_t<decltype(t)>;
      using Src = tensor<typename Dst::value_type, typename Dst::extents_type,
                         std::conditional_t<std::is_same_v<typename Dst::space, host>, device, host>>;
      const auto& s = *static_cast<const Src*>(sources[i].second);
      if (to_array(s.extents()) != to_array(t.extents()))
        throw shape_error(einlm::detail::concat("transformer_lm_cuda::", who, ": ", name, " has shape ",
                                                shape_string(s.extents()), ", the destination ", shape_string(t.extents())));
      return s;
    };
    std::size_t i = 0;
    to.for_each_parameter([&](const std::string& name, auto& t) { source_of(i++, name, t); });
    if (i != sources.size())
      throw shape_error(einlm::detail::concat("transformer_lm_cuda::", who, ": the models' configurations differ"));
    i = 0;
    to.for_each_parameter([&](const std::string& name, auto& t) { copy(source_of(i++, name, t), t); });
  }

  /// Token ids (B, S) checked and uploaded as int64; their host copy goes to *host_ids when given
  /// (the embedding's backward groups them).
  template <class I>
  tensor<std::int64_t, dims<2>, device> upload_ids(const I& tokens_in, const char* what, bool check_length,
                                                   std::vector<std::int64_t>* host_ids = nullptr) {
    const auto tokens = as_view(tokens_in);
    static_assert(decltype(tokens)::rank() == 2, "transformer_lm_cuda: token ids are (batch, sequence)");
    static_assert(std::is_same_v<typename decltype(tokens)::space, host>,
                  "transformer_lm_cuda: token ids are host arrays (what get_batch gives)");
    const index_t B = tokens.extent(0), S = tokens.extent(1);
    if (check_length && S > config_.context_length)
      throw shape_error(einlm::detail::concat("transformer_lm_cuda: a sequence of ", S, " tokens exceeds context_length ",
                                              config_.context_length));
    auto ids = detail::checked_token_ids(tokens, config_.vocab_size, "transformer_lm_cuda", what);  // (B·S,)
    tensor<std::int64_t, dims<2>, device> out(dims<2>(B, S));  // (B, S)
    if (!ids.empty())
      EINLM_CUDA_CHECK(cudaMemcpyAsync(out.data(), ids.data(), out.bytes(), cudaMemcpyHostToDevice, stream()));
    EINLM_CUDA_CHECK(cudaStreamSynchronize(stream()));  // `ids` is released on return
    if (host_ids) *host_ids = std::move(ids);
    return out;
  }

  const tensor<T, dims<2>, device>& head_weight() const {
    return config_.tied_embeddings ? params_.token_embeddings : params_.lm_head;
  }
  tensor<T, dims<2>, device>& head_gradient() { return config_.tied_embeddings ? grads_.token_embeddings : grads_.lm_head; }

  template <class I>
  tensor<T, dims<3>, device> forward(const I& tokens, bool keep) {
    const auto ids = upload_ids(tokens, "token", /*check_length=*/true, &ids_);  // (B, S)
    const auto t = as_view(tokens);
    const index_t B = t.extent(0), S = t.extent(1), D = config_.d_model, N = B * S;
    tensor<T, dims<3>, device> x(dims<3>(B, S, D));  // (B, S, D)
    gather_rows(params_.token_embeddings, ids.data(), x, N);
    if (positions_.extent(0) != S) {
      std::vector<std::int64_t> p(static_cast<std::size_t>(S));
      for (index_t s = 0; s < S; ++s) p[static_cast<std::size_t>(s)] = s;
      positions_ = tensor<std::int64_t, dims<1>, device>(dims<1>(S));  // (S,)
      if (S > 0) {
        EINLM_CUDA_CHECK(cudaMemcpyAsync(positions_.data(), p.data(), positions_.bytes(), cudaMemcpyHostToDevice, stream()));
        EINLM_CUDA_CHECK(cudaStreamSynchronize(stream()));  // `p` is released on return
      }
    }
    acts_.clear();
    if (keep) acts_.resize(params_.layers.size());
    for (std::size_t i = 0; i < params_.layers.size(); ++i) {
      block_activations scratch;
      x = block_forward(params_.layers[i], std::move(x), keep ? acts_[i] : scratch, positions_,
                        [](const auto& q, const auto& k, const auto& v) { return fused_attention_forward(q, k, v, /*causal=*/true); });  // (B, S, D)
    }
    auto n = fused_rms_norm(x, params_.ln_final, config_.norm_eps);                  // (B, S, D)
    auto logits = einsum<"b s d, v d -> b s v">(n, head_weight());                   // (B, S, V)
    if (keep) {
      final_x_ = std::move(x);
      final_n_ = std::move(n);
    }
    return logits;
  }

  /// out[n, :] = table[ids[n], :] for the N rows of out (…, D): rows of a (rows, D) table or of a (1, rows, D) tensor.
  template <class Table, class Out>
  static void gather_rows(const Table& table, const std::int64_t* ids, Out& out, index_t N) {
    const index_t D = out.extent(Out::extents_type::rank() - 1);
    if (N == 0 || D == 0) return;
    detail::device_lm::gather_rows_kernel<T><<<detail::fused::elementwise_blocks(N * D), 256, 0, stream()>>>(
        table.data(), ids, out.data(), N, D);
    EINLM_CUDA_CHECK(cudaGetLastError());
  }

  /// One block's forward pass at `positions` (S,); attend(q, k, v) after RoPE gives the attention's
  /// {out, lse}; fills `a` with what its backward pass reads.
  template <class Attend>
  tensor<T, dims<3>, device> block_forward(const device_block_parameters<T>& p, tensor<T, dims<3>, device> x,
                                           block_activations& a, const tensor<std::int64_t, dims<1>, device>& positions,
                                           Attend&& attend) {
    const index_t H = config_.num_heads, K = config_.kv_heads();
    const double eps = config_.norm_eps, theta = config_.rope_theta;
    auto n1 = fused_rms_norm(x, p.ln1, eps);                                                   // (B, S, D)
    tensor<T, dims<4>, device> q, k, v;
    {
      const auto q_proj = einsum<"b s d, o d -> b s o">(n1, p.q_proj);                         // (B, S, H·Dh)
      const auto k_proj = einsum<"b s d, o d -> b s o">(n1, p.k_proj);                         // (B, S, K·Dh)
      const auto v_proj = einsum<"b s d, o d -> b s o">(n1, p.v_proj);                         // (B, S, K·Dh)
      q = rearrange<"b s (h e) -> b h s e">(q_proj, axis_size<"h">{H});                        // (B, H, S, Dh)
      k = rearrange<"b s (h e) -> b h s e">(k_proj, axis_size<"h">{K});                        // (B, K, S, Dh)
      v = rearrange<"b s (h e) -> b h s e">(v_proj, axis_size<"h">{K});                        // (B, K, S, Dh)
    }
    if (config_.qk_norm) {
      a.q_raw = std::move(q);
      a.k_raw = std::move(k);
      q = fused_rms_norm(a.q_raw, p.q_norm, eps);                                              // (B, H, S, Dh)
      k = fused_rms_norm(a.k_raw, p.k_norm, eps);                                              // (B, K, S, Dh)
    }
    q = fused_rope(q, positions, theta);                                                       // (B, H, S, Dh)
    k = fused_rope(k, positions, theta);                                                       // (B, K, S, Dh)
    auto attn = attend(q, k, v);                                                               // (B, H, S, Dh), (B, H, S)
    tensor<T, dims<3>, device> merged = rearrange<"b h s e -> b s (h e)">(attn.out);            // (B, S, H·Dh)
    const auto o = einsum<"b s e, d e -> b s d">(merged, p.output_proj);                       // (B, S, D)
    tensor<T, dims<3>, device> h = x + o;                                                      // (B, S, D)
    auto n2 = fused_rms_norm(h, p.ln2, eps);                                                   // (B, S, D)
    auto f1 = einsum<"b s d, f d -> b s f">(n2, p.w1);                                         // (B, S, F)
    auto f3 = einsum<"b s d, f d -> b s f">(n2, p.w3);                                         // (B, S, F)
    tensor<T, dims<3>, device> g = einlm::silu(f1) * f3;                                             // (B, S, F)
    const auto y = einsum<"b s f, d f -> b s d">(g, p.w2);                                     // (B, S, D)
    tensor<T, dims<3>, device> out = h + y;                                                    // (B, S, D)
    a.x = std::move(x);
    a.n1 = std::move(n1);
    a.q = std::move(q);
    a.k = std::move(k);
    a.v = std::move(v);
    a.o = std::move(attn.out);
    a.lse = std::move(attn.lse);
    a.merged = std::move(merged);
    a.h = std::move(h);
    a.n2 = std::move(n2);
    a.f1 = std::move(f1);
    a.f3 = std::move(f3);
    a.g = std::move(g);
    return out;
  }

  /// The backward pass from the loss gradient of the logits; frees the activations as it goes.
  void backward(tensor<T, dims<3>, device> dlogits) {
    const double eps = config_.norm_eps;
    auto dn = einsum<"b s v, v d -> b s d">(dlogits, head_weight());                 // (B, S, D)
    einsum_accumulate<"b s v, b s d -> v d">(head_gradient(), dlogits, final_n_);      // (V, D)
    dlogits = tensor<T, dims<3>, device>();
    final_n_ = tensor<T, dims<3>, device>();
    auto final_grads = fused_rms_norm_backward(final_x_, params_.ln_final, dn, eps);   // (B, S, D), (D,)
    grads_.ln_final = grads_.ln_final + final_grads.dgain;
    final_x_ = tensor<T, dims<3>, device>();
    tensor<T, dims<3>, device> dx = std::move(final_grads.dx);                        // (B, S, D)
    for (std::size_t i = params_.layers.size(); i-- > 0;) {
      dx = block_backward(params_.layers[i], grads_.layers[i], acts_[i], std::move(dx));  // (B, S, D)
      acts_[i] = block_activations();
    }
    acts_.clear();
    scatter_embedding(dx);
  }

  /// One block's backward pass: dx of its output in, dx of its input out; adds its weights' gradients.
  tensor<T, dims<3>, device> block_backward(const device_block_parameters<T>& p, device_block_parameters<T>& gr,
                                            block_activations& a, tensor<T, dims<3>, device> dy) {
    const index_t H = config_.num_heads, K = config_.kv_heads();
    const double eps = config_.norm_eps, theta = config_.rope_theta;
    // The feed-forward network: out = h + g w2ᵀ, g = silu(f1) ⊙ f3.
    auto dg = einsum<"b s d, d f -> b s f">(dy, p.w2);                                 // (B, S, F)
    einsum_accumulate<"b s d, b s f -> d f">(gr.w2, dy, a.g);                          // (D, F)
    auto ffn = fused_swiglu_backward(a.f1, a.f3, dg);                                  // (B, S, F) twice
    einsum_accumulate<"b s f, b s d -> f d">(gr.w1, ffn.da, a.n2);                     // (F, D)
    einsum_accumulate<"b s f, b s d -> f d">(gr.w3, ffn.db, a.n2);                     // (F, D)
    auto dn2 = einsum<"b s f, f d -> b s d">(ffn.da, p.w1);                            // (B, S, D)
    einsum_accumulate<"b s f, f d -> b s d">(dn2, ffn.db, p.w3);                       // (B, S, D)
    auto ln2 = fused_rms_norm_backward(a.h, p.ln2, dn2, eps);                          // (B, S, D), (D,)
    gr.ln2 = gr.ln2 + ln2.dgain;
    tensor<T, dims<3>, device> dh = dy + ln2.dx;                                       // (B, S, D)
    // Attention: h = x + merged output_projᵀ.
    einsum_accumulate<"b s d, b s e -> d e">(gr.output_proj, dh, a.merged);            // (D, H·Dh)
    const auto dmerged = einsum<"b s d, d e -> b s e">(dh, p.output_proj);             // (B, S, H·Dh)
    tensor<T, dims<4>, device> dout = rearrange<"b s (h e) -> b h s e">(dmerged, axis_size<"h">{H});  // (B, H, S, Dh)
    auto attn = fused_attention_backward(a.q, a.k, a.v, a.o, a.lse, dout, /*causal=*/true);
    auto dq = fused_rope_backward(attn.dq, positions_, theta);                         // (B, H, S, Dh)
    auto dk = fused_rope_backward(attn.dk, positions_, theta);                         // (B, K, S, Dh)
    if (config_.qk_norm) {
      auto qn = fused_rms_norm_backward(a.q_raw, p.q_norm, dq, eps);                   // (B, H, S, Dh), (Dh,)
      auto kn = fused_rms_norm_backward(a.k_raw, p.k_norm, dk, eps);                   // (B, K, S, Dh), (Dh,)
      gr.q_norm = gr.q_norm + qn.dgain;
      gr.k_norm = gr.k_norm + kn.dgain;
      dq = std::move(qn.dx);
      dk = std::move(kn.dx);
    }
    tensor<T, dims<3>, device> dq_m = rearrange<"b h s e -> b s (h e)">(dq);           // (B, S, H·Dh)
    tensor<T, dims<3>, device> dk_m = rearrange<"b h s e -> b s (h e)">(dk);           // (B, S, K·Dh)
    tensor<T, dims<3>, device> dv_m = rearrange<"b h s e -> b s (h e)">(attn.dv);      // (B, S, K·Dh)
    einsum_accumulate<"b s o, b s d -> o d">(gr.q_proj, dq_m, a.n1);                   // (H·Dh, D)
    einsum_accumulate<"b s o, b s d -> o d">(gr.k_proj, dk_m, a.n1);                   // (K·Dh, D)
    einsum_accumulate<"b s o, b s d -> o d">(gr.v_proj, dv_m, a.n1);                   // (K·Dh, D)
    auto dn1 = einsum<"b s o, o d -> b s d">(dq_m, p.q_proj);                          // (B, S, D)
    einsum_accumulate<"b s o, o d -> b s d">(dn1, dk_m, p.k_proj);                     // (B, S, D)
    einsum_accumulate<"b s o, o d -> b s d">(dn1, dv_m, p.v_proj);                     // (B, S, D)
    auto ln1 = fused_rms_norm_backward(a.x, p.ln1, dn1, eps);                          // (B, S, D), (D,)
    gr.ln1 = gr.ln1 + ln1.dgain;
    return tensor<T, dims<3>, device>(dh + ln1.dx);                                    // (B, S, D)
  }

  /// Adds each position's dx row (B, S, D) into its token's row of the embedding gradient.
  void scatter_embedding(const tensor<T, dims<3>, device>& dx) {
    const index_t D = config_.d_model;
    const auto runs = detail::group_by_token(ids_);
    const auto U = static_cast<index_t>(runs.starts.size()) - 1;
    if (U <= 0 || D == 0) return;
    // One upload: order (N,), starts (U + 1,), ids (N,).
    std::vector<std::int64_t> table(runs.order);
    table.insert(table.end(), runs.starts.begin(), runs.starts.end());
    table.insert(table.end(), ids_.begin(), ids_.end());
    tensor<std::int64_t, dims<1>, device> t(dims<1>(static_cast<index_t>(table.size())));  // (2N + U + 1,)
    EINLM_CUDA_CHECK(cudaMemcpyAsync(t.data(), table.data(), t.bytes(), cudaMemcpyHostToDevice, stream()));
    const auto N = static_cast<index_t>(ids_.size());
    const dim3 grid(static_cast<unsigned>(U), static_cast<unsigned>((D + 127) / 128));
    detail::device_lm::scatter_runs_kernel<T><<<grid, 128, 0, stream()>>>(grads_.token_embeddings.data(), t.data(),
                                                                         t.data() + N, t.data() + N + U + 1, dx.data(), D);
    EINLM_CUDA_CHECK(cudaGetLastError());
    EINLM_CUDA_CHECK(cudaStreamSynchronize(stream()));  // `table` and `t` are released on return
  }

  transformer_config config_;
  device_transformer_parameters<T> params_, grads_;
  std::vector<block_activations> acts_;
  tensor<T, dims<3>, device> final_x_, final_n_;     // (B, S, D) the last block's output, its norm
  tensor<std::int64_t, dims<1>, device> positions_;  // (S,) 0 … S − 1
  std::vector<std::int64_t> ids_;                     // (B·S,) the last forward's token ids
  std::size_t kept_bytes_ = 0;
  mutable transformer_parameters<T> staging_;         // host copies for load_converted_parameters / store_converted_gradients
};

/// Sets the device working copy's weights to the host master weights, converted — what
/// train::fit's mixed-precision loop calls (found by argument-dependent lookup).
template <class T, class U>
void convert_parameters(const transformer_lm<U>& from, transformer_lm_cuda<T>& to) {
  to.load_converted_parameters(from);
}

/// Sets the host master model's gradients to the device working copy's, converted.
template <class T, class U>
void convert_gradients(const transformer_lm_cuda<U>& from, transformer_lm<T>& to) {
  from.store_converted_gradients(to);
}

}  // namespace einlm::nn
