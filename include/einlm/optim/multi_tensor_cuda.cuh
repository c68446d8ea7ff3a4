// einlm/optim/multi_tensor_cuda.cuh — what the GPU optimizers (adamw_cuda, sgd_cuda,
// adagrad_cuda) share: a step's parameters queued by name, then updated by one kernel over all of
// them. nvcc only.
//
// Contract. An optimizer queues one Entry per parameter (a trivially copyable struct with a
// member `n`, the parameter's length) and calls multi_tensor_queue::launch with a function that
// starts its kernel. launch() cuts every entry into chunks of at most chunk_elements elements,
// uploads the entries and then the chunks in one copy from pageable memory (the driver has taken
// the bytes when the call returns; the next step's upload is ordered after this kernel on the same
// stream), and calls the function with the device tables, the chunk count and a grid size; the
// kernel walks the chunks with a grid-stride loop (for_each_chunk_element). The table grows only,
// since a step still in flight may read it. Each parameter name may be queued once per step (a
// second update of a name in one step is a value_error naming it: both would race in one launch).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"

static_assert(EINLM_HAS_CUDA, "einlm/optim/multi_tensor_cuda.cuh must be compiled by nvcc");

namespace einlm::optim::detail::multi_tensor {

/// A run of at most chunk_elements elements of one queued parameter.
struct chunk_entry {
  int tensor;
  index_t begin;
};

constexpr index_t chunk_elements = index_t{1} << 16;

/// Element i of a gradient stored as float or (bf16_storage ≠ 0) bf16, as float.
__device__ inline float gradient_at(const void* grad, int bf16_storage, index_t i) {
  return bf16_storage ? convert<float>(static_cast<const bf16*>(grad)[i]) : static_cast<const float*>(grad)[i];
}

/// Calls f(t, i) for every element i of every chunk this block owns, t the chunk's entry.
template <class Entry, class F>
__device__ void for_each_chunk_element(const Entry* __restrict__ tensors, const chunk_entry* __restrict__ chunks,
                                       index_t chunk_count, F&& f) {
  for (index_t c = blockIdx.x; c < chunk_count; c += gridDim.x) {
    const chunk_entry ch = chunks[c];
    const Entry t = tensors[ch.tensor];
    const index_t end = t.n < ch.begin + chunk_elements ? t.n : ch.begin + chunk_elements;
    for (index_t i = ch.begin + threadIdx.x; i < end; i += blockDim.x) f(t, i);
  }
}

/// The parameters queued for one step, and the device table they are uploaded to.
template <class Entry>
class multi_tensor_queue {
  static_assert(std::is_trivially_copyable_v<Entry>, "multi_tensor_queue: entries are copied to the device byte for byte");

 public:
  /// Forgets what was queued and not launched.
  void clear() {
    queue_.clear();
    names_.clear();
  }

  /// Queues e for parameter `name`; `who` names the optimizer in the error.
  void push(const char* who, const std::string& name, const Entry& e) {
    if (!names_.insert(name).second)
      throw value_error(einlm::detail::concat(who, ": parameter '", name, "' is already queued in this step"));
    queue_.push_back(e);
  }

  /// Uploads the queue and calls launch(tensors, chunks, chunk_count, blocks) to start the kernel
  /// on `stream`; returns whether it did (nothing is launched for an empty queue). Clears the queue.
  template <class Launch>
  bool launch(cudaStream_t stream, Launch&& start) {
    std::vector<chunk_entry> chunks;
    for (std::size_t t = 0; t < queue_.size(); ++t)
      for (index_t b = 0; b < queue_[t].n; b += chunk_elements) chunks.push_back({static_cast<int>(t), b});
    if (chunks.empty()) {
      clear();
      return false;
    }
    // One upload: the tensor table, then the chunk table.
    const std::size_t tensor_bytes = queue_.size() * sizeof(Entry), chunk_bytes = chunks.size() * sizeof(chunk_entry);
    const std::size_t offset = (tensor_bytes + 15) / 16 * 16;
    if (table_.size() < static_cast<index_t>(offset + chunk_bytes))  // grows only: a step in flight may still read it
      table_ = tensor<unsigned char, dims<1>, device>(dims<1>(static_cast<index_t>(offset + chunk_bytes)));  // (bytes,)
    staging_.assign(offset + chunk_bytes, 0);
    std::memcpy(staging_.data(), queue_.data(), tensor_bytes);
    std::memcpy(staging_.data() + offset, chunks.data(), chunk_bytes);
    EINLM_CUDA_CHECK(cudaMemcpyAsync(table_.data(), staging_.data(), staging_.size(), cudaMemcpyHostToDevice, stream));
    const auto count = static_cast<index_t>(chunks.size());
    const auto blocks = static_cast<unsigned>(std::min<index_t>(count, index_t{8} * einlm::detail::multiprocessor_count()));
    start(reinterpret_cast<const Entry*>(table_.data()), reinterpret_cast<const chunk_entry*>(table_.data() + offset), count,
          blocks);
    EINLM_CUDA_CHECK(cudaGetLastError());
    clear();
    return true;
  }

 private:
  std::vector<Entry> queue_;
  std::set<std::string> names_;
  std::vector<unsigned char> staging_;
  tensor<unsigned char, dims<1>, device> table_;  // (bytes,) the uploaded tables
};

}  // namespace einlm::optim::detail::multi_tensor
