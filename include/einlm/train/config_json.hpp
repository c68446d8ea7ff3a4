// einlm/train/config_json.hpp — a model configuration as config.json, the file a checkpoint
// directory and `einlm-lm train --config` share.
//
//   std::string text = train::to_json(config);                 // pretty-printed, every field
//   nn::transformer_config c = train::config_from_json(text, "config.json");
//   nn::transformer_config c = train::load_config("DIR/config.json");
//   nn::moe_config m = train::load_model_config("DIR/config.json");  // dense or mixture of experts
//   train::save_config("DIR/config.json", c);                  // atomically
//
// Keys are the field names of nn::transformer_config. vocab_size, context_length, d_model,
// num_layers and num_heads are required; num_kv_heads, d_ff (0 = default), rope_theta, norm_eps,
// tied_embeddings, qk_norm, ffn ("swiglu" | "gelu_mlp"), positions ("rope" | "learned"), norm
// ("rms_norm" | "layer_norm") and linear_bias are optional with the config's defaults. CS336's
// model_config.json is read as well: tie_embeddings is a synonym of tied_embeddings, and its
// remove_rmsnorm, use_post_norm, remove_rope (false) and ffn_type (null or "swiglu") are accepted
// at their defaults.
//
// A mixture of experts (nn::moe_config, read by model_config_from_json / load_model_config) adds
// num_experts (0 = dense), top_k (1), num_shared_experts (0), moe_d_ff (0 = d_ff), router
// ("softmax" | "sigmoid"), first_dense_layers (0), moe_layer_step (1), capacity_factor (absent or
// null = dropless), aux_loss_coef (0.01), z_loss_coef (1e-3, the router z-loss), seq_aux_loss_coef
// (0) and bias_update_rate (0); to_json writes them only when num_experts > 0. config_from_json
// rejects a configuration with experts (the caller expects a dense model).
//
// An unknown key, a value of the wrong type, a missing required key, malformed JSON, or a
// configuration that fails validate() is a config_error naming the file and the field.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "einlm/core/error.hpp"
#include "einlm/core/file_io.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/moe_accounting.hpp"
#include "einlm/tokenizer/json.hpp"

namespace einlm::train {

namespace detail {

inline std::string json_number(double v) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace detail

/// config.json's text for `m` (every field, one per line; the MoE fields when num_experts > 0).
inline std::string to_json(const nn::moe_config& m) {
  const nn::transformer_config& c = m.base;
  auto field = [](const char* key, const std::string& value, bool last = false) {
    return einlm::detail::concat("  \"", key, "\": ", value, last ? "\n" : ",\n");
  };
  auto quoted = [](const char* s) { return einlm::detail::concat("\"", s, "\""); };
  auto boolean = [](bool b) { return std::string(b ? "true" : "false"); };
  std::string out = "{\n";
  out += field("vocab_size", std::to_string(c.vocab_size));
  out += field("context_length", std::to_string(c.context_length));
  out += field("d_model", std::to_string(c.d_model));
  out += field("num_layers", std::to_string(c.num_layers));
  out += field("num_heads", std::to_string(c.num_heads));
  out += field("num_kv_heads", std::to_string(c.num_kv_heads));
  out += field("d_ff", std::to_string(c.d_ff));
  out += field("rope_theta", detail::json_number(c.rope_theta));
  out += field("norm_eps", detail::json_number(c.norm_eps));
  out += field("tied_embeddings", boolean(c.tied_embeddings));
  out += field("qk_norm", boolean(c.qk_norm));
  out += field("ffn", quoted(c.ffn == nn::ffn_kind::swiglu ? "swiglu" : "gelu_mlp"));
  out += field("positions", quoted(c.positions == nn::position_kind::rope ? "rope" : "learned"));
  out += field("norm", quoted(c.norm == nn::norm_kind::rms_norm ? "rms_norm" : "layer_norm"));
  const bool moe = m.num_experts > 0;
  out += field("linear_bias", boolean(c.linear_bias), !moe);
  if (moe) {
    out += field("num_experts", std::to_string(m.num_experts));
    out += field("top_k", std::to_string(m.top_k));
    out += field("num_shared_experts", std::to_string(m.num_shared_experts));
    out += field("moe_d_ff", std::to_string(m.expert_d_ff));
    out += field("router", quoted(m.router == nn::router_kind::softmax ? "softmax" : "sigmoid"));
    out += field("first_dense_layers", std::to_string(m.first_dense_layers));
    out += field("moe_layer_step", std::to_string(m.moe_layer_step));
    out += field("capacity_factor", m.capacity_factor == 0 ? "null" : detail::json_number(m.capacity_factor));
    out += field("aux_loss_coef", detail::json_number(m.aux_loss_coef));
    out += field("z_loss_coef", detail::json_number(m.z_loss_coef));
    out += field("seq_aux_loss_coef", detail::json_number(m.seq_aux_loss_coef));
    out += field("bias_update_rate", detail::json_number(m.bias_update_rate), true);
  }
  out += "}\n";
  return out;
}

/// config.json's text for a dense model.
inline std::string to_json(const nn::transformer_config& c) { return to_json(nn::moe_config{.base = c}); }

/// Parses config.json's text, dense or mixture of experts; `name` (the file) prefixes every message.
inline nn::moe_config model_config_from_json(std::string_view text, const std::string& name) {
  namespace json = tokenizer::detail::json;
  json::value root;
  try {
    root = json::parse(text, name);
  } catch (const error& e) {
    throw nn::config_error(e.what());
  }
  auto fail = [&](const json::value& at, const std::string& what) -> nn::config_error {
    return nn::config_error(einlm::detail::concat(json::where(name, text, at.offset), ": ", what));
  };
  if (root.type != json::value::kind::object) throw fail(root, "the configuration must be a JSON object");
  nn::moe_config m;
  nn::transformer_config& c = m.base;
  auto integer = [&](const json::value& v, const std::string& key) {
    std::int64_t x = 0;
    const auto* b = v.text.data();
    const auto [end, ec] = std::from_chars(b, b + v.text.size(), x);
    if (v.type != json::value::kind::number || ec != std::errc{} || end != b + v.text.size())
      throw fail(v, einlm::detail::concat("'", key, "' must be an integer"));
    return x;
  };
  auto real = [&](const json::value& v, const std::string& key) {
    if (v.type != json::value::kind::number) throw fail(v, einlm::detail::concat("'", key, "' must be a number"));
    return std::stod(v.text);
  };
  auto boolean = [&](const json::value& v, const std::string& key) {
    if (v.type != json::value::kind::boolean) throw fail(v, einlm::detail::concat("'", key, "' must be true or false"));
    return v.boolean;
  };
  auto choice = [&](const json::value& v, const std::string& key, std::string_view a, std::string_view b) {
    if (v.type != json::value::kind::string || (v.text != a && v.text != b))
      throw fail(v, einlm::detail::concat("'", key, "' must be \"", a, "\" or \"", b, "\""));
    return v.text == a;
  };
  bool seen[5] = {};
  for (const auto& [key, v] : root.members) {
    if (key == "vocab_size") c.vocab_size = integer(v, key), seen[0] = true;
    else if (key == "context_length") c.context_length = integer(v, key), seen[1] = true;
    else if (key == "d_model") c.d_model = integer(v, key), seen[2] = true;
    else if (key == "num_layers") c.num_layers = integer(v, key), seen[3] = true;
    else if (key == "num_heads") c.num_heads = integer(v, key), seen[4] = true;
    else if (key == "num_kv_heads") c.num_kv_heads = integer(v, key);
    else if (key == "d_ff") c.d_ff = integer(v, key);
    else if (key == "rope_theta") c.rope_theta = real(v, key);
    else if (key == "norm_eps") c.norm_eps = real(v, key);
    else if (key == "tied_embeddings") c.tied_embeddings = boolean(v, key);
    else if (key == "qk_norm") c.qk_norm = boolean(v, key);
    else if (key == "ffn") c.ffn = choice(v, key, "swiglu", "gelu_mlp") ? nn::ffn_kind::swiglu : nn::ffn_kind::gelu_mlp;
    else if (key == "positions")
      c.positions = choice(v, key, "rope", "learned") ? nn::position_kind::rope : nn::position_kind::learned;
    else if (key == "norm")
      c.norm = choice(v, key, "rms_norm", "layer_norm") ? nn::norm_kind::rms_norm : nn::norm_kind::layer_norm;
    else if (key == "linear_bias") c.linear_bias = boolean(v, key);
    else if (key == "tie_embeddings") c.tied_embeddings = boolean(v, key);
    // CS336's model_config.json switches: only the default (full) architecture is accepted.
    else if (key == "remove_rmsnorm" || key == "use_post_norm" || key == "remove_rope") {
      if (boolean(v, key)) throw fail(v, einlm::detail::concat("'", key, "': true is not supported (only false)"));
    } else if (key == "ffn_type") {
      if (!v.is_null() && !(v.type == json::value::kind::string && v.text == "swiglu"))
        throw fail(v, "'ffn_type' must be null or \"swiglu\"");
    }
    else if (key == "num_experts") m.num_experts = integer(v, key);
    else if (key == "top_k") m.top_k = integer(v, key);
    else if (key == "num_shared_experts") m.num_shared_experts = integer(v, key);
    else if (key == "moe_d_ff") m.expert_d_ff = integer(v, key);
    else if (key == "router")
      m.router = choice(v, key, "softmax", "sigmoid") ? nn::router_kind::softmax : nn::router_kind::sigmoid;
    else if (key == "first_dense_layers") m.first_dense_layers = integer(v, key);
    else if (key == "moe_layer_step") m.moe_layer_step = integer(v, key);
    else if (key == "capacity_factor") m.capacity_factor = v.is_null() ? 0.0 : real(v, key);
    else if (key == "aux_loss_coef") m.aux_loss_coef = real(v, key);
    else if (key == "z_loss_coef") m.z_loss_coef = real(v, key);
    else if (key == "seq_aux_loss_coef") m.seq_aux_loss_coef = real(v, key);
    else if (key == "bias_update_rate") m.bias_update_rate = real(v, key);
    else throw fail(v, einlm::detail::concat("unknown key '", key, "'"));
  }
  const char* required[5] = {"vocab_size", "context_length", "d_model", "num_layers", "num_heads"};
  for (int i = 0; i < 5; ++i)
    if (!seen[i]) throw nn::config_error(einlm::detail::concat(name, ": the configuration lacks '", required[i], "'"));
  if (m.capacity_factor == 0 && root.find("capacity_factor") && !root.find("capacity_factor")->is_null())
    throw nn::config_error(einlm::detail::concat(name, ": capacity_factor must be positive (or null for dropless)"));
  if (auto p = m.problem(); !p.empty()) throw nn::config_error(einlm::detail::concat(name, ": ", p));
  return m;
}

/// Parses the config.json of a dense model; one with experts is a config_error.
inline nn::transformer_config config_from_json(std::string_view text, const std::string& name) {
  const nn::moe_config m = model_config_from_json(text, name);
  if (m.num_experts > 0)
    throw nn::config_error(einlm::detail::concat(name, ": num_experts = ", m.num_experts,
                                                 ": a mixture of experts where a dense model is expected"));
  return m.base;
}

/// Reads and parses a config.json file (dense or mixture of experts).
inline nn::moe_config load_model_config(const std::string& path) {
  const auto bytes = einlm::detail::read_file_bytes(path);
  return model_config_from_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

/// Reads and parses the config.json file of a dense model.
inline nn::transformer_config load_config(const std::string& path) {
  const auto bytes = einlm::detail::read_file_bytes(path);
  return config_from_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

/// Writes config.json atomically.
inline void save_config(const std::string& path, const nn::moe_config& m) {
  const std::string text = to_json(m);
  einlm::detail::write_file_atomically(path, {{text.data(), text.size()}});
}
inline void save_config(const std::string& path, const nn::transformer_config& c) {
  save_config(path, nn::moe_config{.base = c});
}

}  // namespace einlm::train
