// einlm/optim/state_io.hpp — what the optimizers share to keep their state in a safetensors file
// (optimizer.safetensors of a checkpoint, train/checkpoint.hpp): metadata that reads back exactly,
// the optimizer's kind, and one flat buffer per parameter.
//
//   w.metadata["beta1"] = detail::exact_text(0.9);                 // the shortest exact text
//   double b = detail::metadata_number<double>(f, "beta1");         // io_error when missing or not a number
//   detail::check_kind(f, "sgd");                                   // metadata "optimizer" must be "sgd"
//   detail::write_buffers(w, buffers, ".momentum_buffer");          // "<name>.momentum_buffer", (N,) each
//   auto b = detail::read_buffer<float>(f, "w.momentum_buffer", "w", n);   // (N,), checked
//
// Each optimizer (optim::adamw, optim::sgd, optim::adagrad) builds its write_state / read_state on
// these. Errors name the file and the tensor or key: a missing key or tensor and a tensor of
// another dtype are io_errors, a buffer whose size is not its parameter's a shape_error; a kind
// other than the expected one is an io_error naming both.
#pragma once

#include <charconv>
#include <map>
#include <string>
#include <utility>
#include <variant>

#include "einlm/core/error.hpp"
#include "einlm/core/safetensors.hpp"
#include "einlm/core/tensor.hpp"

namespace einlm::optim::detail {

/// The number stored as metadata `key` of f (an integer or a floating-point value, whole string).
template <class N>
N metadata_number(const safetensors_file& f, const std::string& key) {
  const auto it = f.metadata().find(key);
  if (it == f.metadata().end())
    throw io_error(einlm::detail::concat(f.path(), ": the checkpoint metadata lacks '", key, "'"));
  const std::string& text = it->second;
  N value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size())
    throw io_error(einlm::detail::concat(f.path(), ": metadata '", key, "' is not a number: '", text, "'"));
  return value;
}

/// The flag stored as metadata `key` of f ("true" or "false").
inline bool metadata_flag(const safetensors_file& f, const std::string& key) {
  const auto it = f.metadata().find(key);
  if (it == f.metadata().end())
    throw io_error(einlm::detail::concat(f.path(), ": the checkpoint metadata lacks '", key, "'"));
  if (it->second == "true") return true;
  if (it->second == "false") return false;
  throw io_error(einlm::detail::concat(f.path(), ": metadata '", key, "' is not \"true\" or \"false\": '", it->second, "'"));
}

/// The shortest text that reads back as exactly x.
inline std::string exact_text(double x) {
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, x);
  return std::string(buffer, ec == std::errc{} ? end : buffer);
}

/// Checks that f holds the state of the optimizer `kind` (metadata "optimizer").
inline void check_kind(const safetensors_file& f, const char* kind) {
  const auto it = f.metadata().find("optimizer");
  if (it == f.metadata().end())
    throw io_error(einlm::detail::concat(f.path(), ": the checkpoint metadata lacks 'optimizer'"));
  if (it->second != kind)
    throw io_error(einlm::detail::concat(f.path(), ": the checkpoint holds the state of the optimizer '", it->second,
                                         "', not of '", kind, "': resume with the optimizer it was saved from"));
}

/// Adds each flat buffer of `buffers` (name → a variant of (N,) host tensors) as "<name><suffix>".
template <class Map>
void write_buffers(safetensors_writer& w, const Map& buffers, const std::string& suffix) {
  for (const auto& [name, buffer] : buffers)
    std::visit([&, &name = name](const auto& b) { w.add(name + suffix, b); }, buffer);  // (N,)
}

/// The (N,) buffer `tensor_name` of parameter `param` (n elements of T) from f; io_error when it is
/// missing or of another dtype, shape_error when its shape is not (n,).
template <class T>
tensor<T, dims<1>, host> read_buffer(const safetensors_file& f, const std::string& tensor_name, const std::string& param,
                                     index_t n) {
  const auto& info = f.info(tensor_name);  // io_error naming the tensor when missing
  if (info.shape.size() != 1 || info.shape[0] != n)
    throw shape_error(einlm::detail::concat(f.path(), ": tensor '", tensor_name, "' has shape ",
                                            einlm::detail::format_dims(info.shape), ", expected (", n,
                                            ",) (the parameter '", param, "' has ", n, " elements)"));
  return f.load<T, dims<1>>(tensor_name);  // (N,); io_error naming the tensor for another dtype
}

}  // namespace einlm::optim::detail
