// einlm/train/config_json.hpp — a transformer_config as config.json, the file a checkpoint
// directory and `einlm-lm train --config` share.
//
//   std::string text = train::to_json(config);                 // pretty-printed, every field
//   nn::transformer_config c = train::config_from_json(text, "config.json");
//   nn::transformer_config c = train::load_config("DIR/config.json");
//   train::save_config("DIR/config.json", c);                  // atomically
//
// Keys are the field names of nn::transformer_config. vocab_size, context_length, d_model,
// num_layers and num_heads are required; num_kv_heads, d_ff (0 = default), rope_theta, norm_eps,
// tied_embeddings, qk_norm, ffn ("swiglu" | "gelu_mlp"), positions ("rope" | "learned"), norm
// ("rms_norm" | "layer_norm") and linear_bias are optional with the config's defaults. CS336's
// model_config.json is read as well: tie_embeddings is a synonym of tied_embeddings, and its
// remove_rmsnorm, use_post_norm, remove_rope (false) and ffn_type (null or "swiglu") are accepted
// at their defaults. An unknown
// key, a value of the wrong type, a missing required key, malformed JSON, or a configuration that
// fails validate() is a config_error naming the file and the field.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "einlm/core/error.hpp"
#include "einlm/core/file_io.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/tokenizer/json.hpp"

namespace einlm::train {

namespace detail {

inline std::string json_number(double v) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace detail

/// config.json's text for `c` (every field, one per line).
inline std::string to_json(const nn::transformer_config& c) {
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
  out += field("linear_bias", boolean(c.linear_bias), true);
  out += "}\n";
  return out;
}

/// Parses config.json's text; `name` (the file) prefixes every message.
inline nn::transformer_config config_from_json(std::string_view text, const std::string& name) {
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
  nn::transformer_config c;
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
    else throw fail(v, einlm::detail::concat("unknown key '", key, "'"));
  }
  const char* required[5] = {"vocab_size", "context_length", "d_model", "num_layers", "num_heads"};
  for (int i = 0; i < 5; ++i)
    if (!seen[i]) throw nn::config_error(einlm::detail::concat(name, ": the configuration lacks '", required[i], "'"));
  if (auto p = c.problem(); !p.empty()) throw nn::config_error(einlm::detail::concat(name, ": ", p));
  return c;
}

/// Reads and parses a config.json file.
inline nn::transformer_config load_config(const std::string& path) {
  const auto bytes = einlm::detail::read_file_bytes(path);
  return config_from_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

/// Writes config.json atomically.
inline void save_config(const std::string& path, const nn::transformer_config& c) {
  const std::string text = to_json(c);
  einlm::detail::write_file_atomically(path, {{text.data(), text.size()}});
}

}  // namespace einlm::train
