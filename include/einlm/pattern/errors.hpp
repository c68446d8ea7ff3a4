// einlm/pattern/errors.hpp — einops' error sentences, at compile time and at run time.
//
// Run time: pattern_error (an einlm::error) carries einops' full message, wrapped as einops wraps
// it:  ' Error while processing {op}-reduction pattern "{pattern}".\n Input tensor shape: {shape}.
// Additional info: {axes_lengths}.\n {sentence}'   (sets and dicts printed the Python way).
// Compile time: report_error<Code>() fails a static_assert whose message is einops' sentence (with
// its run-time values left out: C++20 cannot format them into the message); the pattern itself
// appears in the compiler's "required from" line, as the template argument of the operation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/pattern/parse.hpp"
#include "einlm/pattern/recipe.hpp"

namespace einlm {

/// An einops pattern that does not fit the operation or the input (einops' EinopsError).
class pattern_error : public error {
 public:
  using error::error;
};

namespace pattern {

namespace detail {

inline std::string python_set(const std::string_view* names, const std::int64_t* lengths, int n) {
  std::string s = "{";
  for (int i = 0; i < n; ++i) {
    if (i) s += ", ";
    if (lengths && lengths[i] > 1) {
      s += std::to_string(lengths[i]);
      s += "-axis";
    } else {
      s += '\'';
      s.append(names[i].data(), names[i].size());
      s += '\'';
    }
  }
  return s + "}";
}

}  // namespace detail

/// einops' sentence for an error of a side or a recipe (without the "Error while processing" frame).
inline std::string error_sentence(error_code code, std::string_view text, std::int64_t a, std::int64_t b,
                                  const std::string_view* names, const std::int64_t* lengths, int n_names,
                                  std::string_view op_name) {
  const std::string t(text);
  switch (code) {
    case error_code::none: return "";
    case error_code::unknown_character: return "Unknown character '" + t + "'";
    case error_code::dots_outside_ellipsis: return "Expression may contain dots only inside ellipsis (...)";
    case error_code::more_than_one_ellipsis:
      return "Expression may contain dots only inside ellipsis (...); only one ellipsis for tensor ";
    case error_code::nested_brackets: return "Axis composition is one-level (brackets inside brackets not allowed)";
    case error_code::unbalanced_brackets: return "Brackets are not balanced";
    case error_code::unclosed_bracket: return "Imbalanced parentheses in expression: \"" + t + "\"";
    case error_code::invalid_identifier: return "Invalid axis identifier: " + t + "\nnot a valid python identifier";
    case error_code::underscore_identifier:
      return "Invalid axis identifier: " + t + "\naxis name should should not start or end with underscore";
    case error_code::duplicate_axis: return "Indexing expression contains duplicate dimension \"" + t + "\"";
    case error_code::zero_anonymous_axis: return "Anonymous axis should have positive length, not 0";
    case error_code::too_many_axes:
      return "einlm supports at most 24 axes and 16 dimensions per side of a pattern";
    case error_code::missing_arrow: return "Pattern must contain exactly one '->': " + t;
    case error_code::ellipsis_only_right: return "Ellipsis found in right side, but not left side of a pattern " + t;
    case error_code::ellipsis_parenthesized_left:
      return "Ellipsis inside parenthesis in the left side is not allowed: " + t;
    case error_code::anonymous_in_rearrange:
      return "Non-unitary anonymous axes are not supported in rearrange (exception is length 1)";
    case error_code::identifiers_one_side:
      return "Identifiers only on one side of expression (should be on both): " + detail::python_set(names, lengths, n_names);
    case error_code::unexpected_left_repeat:
      return "Unexpected identifiers on the left side of repeat: " + detail::python_set(names, lengths, n_names);
    case error_code::repeat_sizes_missing:
      return "Specify sizes for new axes in repeat: " + detail::python_set(names, nullptr, n_names);
    case error_code::unexpected_right_reduce:
      return "Unexpected identifiers on the right side of reduce " + std::string(op_name) + ": " +
             detail::python_set(names, lengths, n_names);
    case error_code::wrong_rank_ellipsis:
      return "Wrong shape: expected >=" + std::to_string(a) + " dims. Received " + std::to_string(b) + "-dim tensor.";
    case error_code::wrong_rank:
      return "Wrong shape: expected " + std::to_string(a) + " dims. Received " + std::to_string(b) + "-dim tensor.";
    case error_code::invalid_axis_name: return "('Invalid name for an axis', '" + t + "')";
    case error_code::axis_not_used: return "Axis " + t + " is not used in transform";
    case error_code::cannot_infer: return "Could not infer sizes for " + detail::python_set(names, nullptr, n_names);
    case error_code::cannot_divide:
      return "Shape mismatch, can't divide axis of length " + std::to_string(a) + " in chunks of " + std::to_string(b);
    case error_code::length_mismatch: return "Shape mismatch, " + std::to_string(a) + " != " + std::to_string(b);
    case error_code::mean_not_floating: return "reduce_mean is not available for non-floating tensors";
    case error_code::einsum_missing_arrow: return "Einsum pattern must contain '->'.";
    case error_code::einsum_composition: return "Shape rearrangement is not yet supported in einsum.";
    case error_code::einsum_singleton: return "Singleton () axes are not yet supported in einsum.";
    case error_code::einsum_anonymous: return "Anonymous axes are not yet supported in einsum.";
    case error_code::einsum_too_many_axes: return "Too many axes in einsum.";
    case error_code::einsum_unknown_axis: return "Unknown axis " + t + " on right side of einsum " + std::string(op_name) + ".";
    case error_code::einsum_no_tensors:
      return "`einops.einsum` takes at minimum two arguments: the tensors (at least one), followed by the pattern.";
    case error_code::einsum_operand_count:
      return a < b ? "fewer operands provided to einstein sum function than specified in the subscripts string"
                   : "more operands provided to einstein sum function than specified in the subscripts string";
    case error_code::einsum_too_many_subscripts:
      return "einstein sum subscripts string contains too many subscripts for operand " + std::to_string(a);
    case error_code::einsum_too_few_subscripts:
      return "operand has more dimensions than subscripts given in einstein sum, but no '...' ellipsis provided "
             "to broadcast the extra dimensions.";
    case error_code::einsum_output_ellipsis:
      return "output has more dimensions than subscripts given in einstein sum, but no '...' ellipsis provided to "
             "broadcast the extra dimensions.";
    case error_code::einsum_diagonal_mismatch:
      return "dimensions in single operand for collapsing index '" + t + "' don't match (" + std::to_string(a) +
             " != " + std::to_string(b) + ")";
    case error_code::einsum_broadcast_mismatch:
      return "operands could not be broadcast together: axis '" + t + "' has lengths " + std::to_string(a) + " and " +
             std::to_string(b);
    case error_code::einsum_capacity:
      return "einlm's einsum takes at most 8 inputs and 16 distinct axes (output and summed, ellipsis included)";
  }
  return "unknown error";
}

/// einops' full message for a rearrange/reduce/repeat error.
inline std::string operation_message(std::string_view op_name, std::string_view pattern_text,
                                     const std::vector<std::int64_t>& shape,
                                     const std::vector<std::pair<std::string, std::int64_t>>& axes,
                                     const std::string& sentence) {
  std::string info = "{";
  for (std::size_t i = 0; i < axes.size(); ++i) {
    if (i) info += ", ";
    info += "'" + axes[i].first + "': " + std::to_string(axes[i].second);
  }
  info += "}";
  return " Error while processing " + std::string(op_name) + "-reduction pattern \"" + std::string(pattern_text) +
         "\".\n Input tensor shape: " + einlm::detail::format_shape(shape) + ". Additional info: " + info + ".\n " +
         sentence;
}

template <error_code>
inline constexpr bool always_false = false;

/// Fails compilation with einops' sentence for `code` (used when the pattern and shapes are static).
template <error_code Code>
constexpr void report_error() {
  constexpr error_code c = Code;
  if constexpr (c == error_code::unknown_character)
    static_assert(always_false<Code>, "einops: Unknown character in the pattern");
  else if constexpr (c == error_code::dots_outside_ellipsis)
    static_assert(always_false<Code>, "einops: Expression may contain dots only inside ellipsis (...)");
  else if constexpr (c == error_code::more_than_one_ellipsis)
    static_assert(always_false<Code>, "einops: Expression may contain dots only inside ellipsis (...); only one ellipsis for tensor");
  else if constexpr (c == error_code::nested_brackets)
    static_assert(always_false<Code>, "einops: Axis composition is one-level (brackets inside brackets not allowed)");
  else if constexpr (c == error_code::unbalanced_brackets)
    static_assert(always_false<Code>, "einops: Brackets are not balanced");
  else if constexpr (c == error_code::unclosed_bracket)
    static_assert(always_false<Code>, "einops: Imbalanced parentheses in expression");
  else if constexpr (c == error_code::invalid_identifier)
    static_assert(always_false<Code>, "einops: Invalid axis identifier: not a valid python identifier");
  else if constexpr (c == error_code::underscore_identifier)
    static_assert(always_false<Code>, "einops: Invalid axis identifier: axis name should should not start or end with underscore");
  else if constexpr (c == error_code::duplicate_axis)
    static_assert(always_false<Code>, "einops: Indexing expression contains duplicate dimension");
  else if constexpr (c == error_code::zero_anonymous_axis)
    static_assert(always_false<Code>, "einops: Anonymous axis should have positive length, not 0");
  else if constexpr (c == error_code::too_many_axes)
    static_assert(always_false<Code>, "einlm supports at most 24 axes and 16 dimensions per side of a pattern");
  else if constexpr (c == error_code::missing_arrow)
    static_assert(always_false<Code>, "einops: Pattern must contain exactly one '->'");
  else if constexpr (c == error_code::ellipsis_only_right)
    static_assert(always_false<Code>, "einops: Ellipsis found in right side, but not left side of a pattern");
  else if constexpr (c == error_code::ellipsis_parenthesized_left)
    static_assert(always_false<Code>, "einops: Ellipsis inside parenthesis in the left side is not allowed");
  else if constexpr (c == error_code::anonymous_in_rearrange)
    static_assert(always_false<Code>, "einops: Non-unitary anonymous axes are not supported in rearrange (exception is length 1)");
  else if constexpr (c == error_code::identifiers_one_side)
    static_assert(always_false<Code>, "einops: Identifiers only on one side of expression (should be on both)");
  else if constexpr (c == error_code::unexpected_left_repeat)
    static_assert(always_false<Code>, "einops: Unexpected identifiers on the left side of repeat");
  else if constexpr (c == error_code::repeat_sizes_missing)
    static_assert(always_false<Code>, "einops: Specify sizes for new axes in repeat");
  else if constexpr (c == error_code::unexpected_right_reduce)
    static_assert(always_false<Code>, "einops: Unexpected identifiers on the right side of reduce");
  else if constexpr (c == error_code::wrong_rank_ellipsis)
    static_assert(always_false<Code>, "einops: Wrong shape: expected more dims (the input has fewer dimensions than the pattern's left side without its ellipsis)");
  else if constexpr (c == error_code::wrong_rank)
    static_assert(always_false<Code>, "einops: Wrong shape: the input's number of dims differs from the pattern's left side");
  else if constexpr (c == error_code::invalid_axis_name)
    static_assert(always_false<Code>, "einops: Invalid name for an axis");
  else if constexpr (c == error_code::axis_not_used)
    static_assert(always_false<Code>, "einops: Axis is not used in transform");
  else if constexpr (c == error_code::cannot_infer)
    static_assert(always_false<Code>, "einops: Could not infer sizes (more than one unknown axis in a composition)");
  else if constexpr (c == error_code::cannot_divide)
    static_assert(always_false<Code>, "einops: Shape mismatch, can't divide axis in chunks");
  else if constexpr (c == error_code::length_mismatch)
    static_assert(always_false<Code>, "einops: Shape mismatch (an axis length differs from the lengths the pattern gives)");
  else if constexpr (c == error_code::mean_not_floating)
    static_assert(always_false<Code>, "einops: reduce_mean is not available for non-floating tensors");
  else if constexpr (c == error_code::einsum_missing_arrow)
    static_assert(always_false<Code>, "einops: Einsum pattern must contain '->'.");
  else if constexpr (c == error_code::einsum_composition)
    static_assert(always_false<Code>, "einops: Shape rearrangement is not yet supported in einsum.");
  else if constexpr (c == error_code::einsum_singleton)
    static_assert(always_false<Code>, "einops: Singleton () axes are not yet supported in einsum.");
  else if constexpr (c == error_code::einsum_anonymous)
    static_assert(always_false<Code>, "einops: Anonymous axes are not yet supported in einsum.");
  else if constexpr (c == error_code::einsum_too_many_axes)
    static_assert(always_false<Code>, "einops: Too many axes in einsum.");
  else if constexpr (c == error_code::einsum_unknown_axis)
    static_assert(always_false<Code>, "einops: Unknown axis on right side of einsum (every output axis must appear in an input)");
  else if constexpr (c == error_code::einsum_no_tensors)
    static_assert(always_false<Code>, "einops: `einops.einsum` takes at minimum two arguments: the tensors (at least one), followed by the pattern.");
  else if constexpr (c == error_code::einsum_operand_count)
    static_assert(always_false<Code>, "einsum: the number of tensors differs from the number of inputs in the pattern (NumPy: fewer/more operands provided to einstein sum function than specified in the subscripts string)");
  else if constexpr (c == error_code::einsum_too_many_subscripts)
    static_assert(always_false<Code>, "einsum: einstein sum subscripts string contains too many subscripts for an operand (a tensor has fewer dimensions than its names)");
  else if constexpr (c == error_code::einsum_too_few_subscripts)
    static_assert(always_false<Code>, "einsum: operand has more dimensions than subscripts given in einstein sum, but no '...' ellipsis provided to broadcast the extra dimensions.");
  else if constexpr (c == error_code::einsum_output_ellipsis)
    static_assert(always_false<Code>, "einsum: output has more dimensions than subscripts given in einstein sum, but no '...' ellipsis provided to broadcast the extra dimensions.");
  else if constexpr (c == error_code::einsum_diagonal_mismatch)
    static_assert(always_false<Code>, "einsum: dimensions in single operand for collapsing index don't match (a name repeated in one input has two lengths)");
  else if constexpr (c == error_code::einsum_broadcast_mismatch)
    static_assert(always_false<Code>, "einsum: operands could not be broadcast together (an axis has two different lengths, neither of them 1)");
  else if constexpr (c == error_code::einsum_capacity)
    static_assert(always_false<Code>, "einlm's einsum takes at most 8 inputs and 16 distinct axes (output and summed, ellipsis included)");
}

}  // namespace pattern
}  // namespace einlm
