// einlm/core/utf8.hpp — UTF-8 encoding of one scalar value, for the readers of text formats
// (safetensors headers, the tokenizer's JSON and vocabulary files).
//
//   utf8_append(out, cp)   appends the encoding of cp (cp ≤ U+10FFFF and not a surrogate: the
//                          caller checks; 1 to 4 bytes)
#pragma once

#include <string>

namespace einlm {

/// Appends the UTF-8 encoding of a scalar value (cp <= 0x10FFFF, not a surrogate).
inline void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace einlm
