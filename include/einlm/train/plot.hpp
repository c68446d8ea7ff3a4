// einlm/train/plot.hpp — loss curves as a PNG image, with no dependencies: a small raster of
// frame, grid, tick labels, title and legend (a built-in 5×7 bitmap font), the series as 2-px
// lines, and a hand-written PNG encoder (8-bit RGB, one IDAT holding a zlib stream of one
// fixed-Huffman deflate block with run-length matches). Host only.
//
//   train::write_loss_png("runs/tiny/loss.png",
//                         {{"train", r.losses, 0x1f77b4}, {"validation", r.val_losses, 0xd62728}},
//                         {.title = "tiny: loss"});
//
// Contract: x is the step, y the loss — linear, or log10 with log_y. The ranges come from the
// finite points of all series (with log_y: the finite positive ones); points that are NaN or
// infinite (or ≤ 0 with log_y) are skipped and a line joins their neighbours. The x range is
// [smallest step, largest step] (±1 for a single step); the y range gets a 5 % margin (a constant
// series ±10 % of its value, or ±1 at 0; ±½ decade with log_y), and does not go below 0 when no
// loss does (linear axis). A lone drawable point is a 4 × 4 mark. Grid lines and tick labels sit
// at 1, 2, 5 × 10^k. The legend goes in the corner of the plot that hides the fewest drawn pixels
// (and is left out when it does not fit).
//   detail::make_plot_geometry(series, options).to_pixel(step, loss)
// is the pixel a point is drawn at, the mapping the writer itself uses.
// The file is written atomically (core/file_io.hpp). Throws value_error for an empty series list,
// no plottable point, or a size outside [64, 16384] pixels, before anything is written; io_error
// when the file cannot be written (a file already at `path` is then untouched).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/file_io.hpp"

namespace einlm::train {

/// One curve: its legend label, its (step, value) points in drawing order, its colour 0xRRGGBB.
struct plot_series {
  std::string label;
  std::vector<std::pair<std::int64_t, double>> points;
  std::uint32_t rgb = 0x1f77b4;
};

struct plot_options {
  int width = 800;   // pixels, 64 … 16384
  int height = 480;  // pixels, 64 … 16384
  std::string title = "loss";
  bool log_y = false;  // a log10 loss axis (points ≤ 0 are skipped)
};

namespace detail {

/// Printable ASCII (32 … 126), 7 rows of 5 bits each, bit 4 the leftmost column. Characters
/// without a glyph are a hollow box.
inline constexpr std::uint8_t font_5x7[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 33 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 34 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 35 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 36 (box)
    {0x19, 0x19, 0x02, 0x04, 0x08, 0x13, 0x13},  // '%'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 38 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 39 (box)
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},  // '('
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},  // ')'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 42 (box)
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00},  // '+'
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08},  // ','
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},  // '-'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C},  // '.'
    {0x01, 0x02, 0x04, 0x04, 0x08, 0x10, 0x10},  // '/'
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E},  // '0'
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},  // '1'
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F},  // '2'
    {0x0E, 0x11, 0x01, 0x06, 0x01, 0x11, 0x0E},  // '3'
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02},  // '4'
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},  // '5'
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E},  // '6'
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},  // '7'
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E},  // '8'
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},  // '9'
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00},  // ':'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 59 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 60 (box)
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00},  // '='
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 62 (box)
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04},  // '?'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 64 (box)
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // 'A'
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},  // 'B'
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},  // 'C'
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},  // 'D'
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},  // 'E'
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},  // 'F'
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},  // 'G'
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // 'H'
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 'I'
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // 'J'
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},  // 'K'
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},  // 'L'
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},  // 'M'
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},  // 'N'
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // 'O'
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},  // 'P'
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},  // 'Q'
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},  // 'R'
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},  // 'S'
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // 'T'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // 'U'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},  // 'V'
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},  // 'W'
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},  // 'X'
    {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04},  // 'Y'
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},  // 'Z'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 91 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 92 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 93 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 94 (box)
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // '_'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 96 (box)
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F},  // 'a'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E},  // 'b'
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E},  // 'c'
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F},  // 'd'
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E},  // 'e'
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08},  // 'f'
    {0x00, 0x00, 0x0F, 0x11, 0x0F, 0x01, 0x0E},  // 'g'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11},  // 'h'
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E},  // 'i'
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C},  // 'j'
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},  // 'k'
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 'l'
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11},  // 'm'
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11},  // 'n'
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E},  // 'o'
    {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10},  // 'p'
    {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01},  // 'q'
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10},  // 'r'
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E},  // 's'
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06},  // 't'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D},  // 'u'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04},  // 'v'
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A},  // 'w'
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11},  // 'x'
    {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 'y'
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F},  // 'z'
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 123 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 124 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 125 (box)
    {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F},  // 126 (box)
};

/// An 8-bit RGB raster, row-major, (0, 0) the top-left pixel; writes outside it are dropped.
struct rgb_image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // width × height × 3

  rgb_image(int w, int h, std::uint32_t rgb)
      : width(w), height(h), pixels(std::size_t(w) * std::size_t(h) * 3) {
    for (std::size_t i = 0; i < pixels.size(); i += 3) {
      pixels[i] = std::uint8_t(rgb >> 16);
      pixels[i + 1] = std::uint8_t(rgb >> 8);
      pixels[i + 2] = std::uint8_t(rgb);
    }
  }
  void set(int x, int y, std::uint32_t rgb) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    std::uint8_t* p = &pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * 3];
    p[0] = std::uint8_t(rgb >> 16);
    p[1] = std::uint8_t(rgb >> 8);
    p[2] = std::uint8_t(rgb);
  }
  std::uint32_t get(int x, int y) const {
    const std::uint8_t* p = &pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * 3];
    return (std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | std::uint32_t(p[2]);
  }
  /// Fills the rectangle [x0, x1] × [y0, y1] (inclusive).
  void fill(int x0, int y0, int x1, int y1, std::uint32_t rgb) {
    for (int y = std::max(y0, 0); y <= std::min(y1, height - 1); ++y)
      for (int x = std::max(x0, 0); x <= std::min(x1, width - 1); ++x) set(x, y, rgb);
  }
};

/// The width in pixels of `text` in the 5×7 font at `scale` (6 × scale per character, no trailing
/// gap).
inline int text_width(const std::string& text, int scale = 1) {
  return text.empty() ? 0 : int(text.size()) * 6 * scale - scale;
}

/// Draws `text` with its top-left corner at (x, y).
inline void draw_text(rgb_image& img, int x, int y, const std::string& text, std::uint32_t rgb,
                      int scale = 1) {
  for (const char ch : text) {
    const unsigned c = static_cast<unsigned char>(ch);
    const std::uint8_t* glyph = font_5x7[(c >= 32 && c < 127) ? c - 32 : '?' - 32];
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (glyph[row] & (0x10 >> col))
          img.fill(x + col * scale, y + row * scale, x + col * scale + scale - 1,
                   y + row * scale + scale - 1, rgb);
    x += 6 * scale;
  }
}

/// A line from (x0, y0) to (x1, y1), 2 pixels wide (Bresenham, each pixel widened to 2 × 2),
/// clipped to the rectangle [cx0, cx1] × [cy0, cy1].
inline void draw_line(rgb_image& img, int x0, int y0, int x1, int y1, std::uint32_t rgb, int cx0,
                      int cy0, int cx1, int cy1) {
  const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    for (int y = y0; y <= y0 + 1; ++y)
      for (int x = x0; x <= x0 + 1; ++x)
        if (x >= cx0 && x <= cx1 && y >= cy0 && y <= cy1) img.set(x, y, rgb);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/// Ticks at multiples of 1, 2 or 5 × 10^k (at least `min_step` apart) in [lo, hi], about `target`
/// of them.
struct tick_set {
  std::vector<double> values;
  double step = 0;  // 0: not evenly spaced (decades of a log axis)
};

inline tick_set nice_ticks(double lo, double hi, int target, double min_step = 0) {
  tick_set t;
  const double raw = (hi - lo) / std::max(target, 1);
  if (!(raw > 0) || !std::isfinite(raw)) return t;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  t.step = std::max((f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag, min_step);
  const double k0 = std::ceil(lo / t.step - 1e-9), k1 = std::floor(hi / t.step + 1e-9);
  for (double k = k0; k <= k1 && t.values.size() < 1000; k += 1) {
    const double v = k * t.step;
    t.values.push_back(std::abs(v) < t.step * 1e-9 ? 0.0 : v);
  }
  return t;
}

/// Ticks of a log10 axis spanning [lo, hi] (log10 units), as loss values: 1, 2, 5 × 10^k, or only
/// the decades when those are too many; linear ticks when fewer than two fit.
inline tick_set log_ticks(double lo, double hi, int target) {
  tick_set all, decades;
  for (double k = std::floor(lo); k <= std::ceil(hi) && all.values.size() < 3000; k += 1)
    for (const double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, k), lv = std::log10(v);
      if (lv < lo - 1e-9 || lv > hi + 1e-9) continue;
      all.values.push_back(v);
      if (m == 1.0) decades.values.push_back(v);
    }
  if (all.values.size() >= 2 && double(all.values.size()) <= 1.5 * target) return all;
  if (decades.values.size() >= 2) {
    if (double(decades.values.size()) > 1.5 * target) {  // thin the decades out
      const std::size_t every =
          (decades.values.size() + std::size_t(target) - 1) / std::size_t(target);
      tick_set thin;
      for (std::size_t i = 0; i < decades.values.size(); i += every)
        thin.values.push_back(decades.values[i]);
      return thin;
    }
    return decades;
  }
  tick_set lin = nice_ticks(std::pow(10.0, lo), std::pow(10.0, hi), target);
  std::erase_if(lin.values, [](double v) { return !(v > 0); });
  return lin;
}

/// The label of tick value `v` on an axis whose ticks are `step` apart (0: any spacing).
inline std::string tick_label(double v, double step) {
  char buf[40];
  if (v == 0)
    return "0";
  else if (step <= 0)
    std::snprintf(buf, sizeof buf, "%g", v);
  else if (step >= 1 && std::abs(v) < 1e7)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else {
    const int decimals = int(std::ceil(-std::log10(step) - 1e-9));
    if (step < 1 && decimals <= 6 && std::abs(v) < 1e7)
      std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    else
      std::snprintf(buf, sizeof buf, "%.4g", v);
  }
  return buf;
}

/// Where things go: the plot area, the data ranges, the ticks, and the (step, loss) → pixel map.
struct plot_geometry {
  int width = 0, height = 0;                     // the image
  int left = 0, top = 0, right = 0, bottom = 0;  // the plot area, inclusive pixel bounds
  double x_min = 0, x_max = 1;                   // steps at the left and right edges
  double y_min = 0, y_max = 1;  // losses (log10 of them with log_y) at the bottom and top
  bool log_y = false;
  tick_set x_ticks, y_ticks;  // steps; losses (not log10)
  std::vector<std::string> x_labels, y_labels;

  /// Whether a loss is drawn: finite, and positive with log_y.
  bool plottable(double loss) const { return std::isfinite(loss) && (!log_y || loss > 0); }
  double y_of(double loss) const { return log_y ? std::log10(loss) : loss; }
  int pixel_x(double step) const {
    const double f = std::clamp((step - x_min) / (x_max - x_min), -4.0, 5.0);
    return left + int(std::lround(f * (right - left)));
  }
  int pixel_y(double loss) const {
    const double f = std::clamp((y_of(loss) - y_min) / (y_max - y_min), -4.0, 5.0);
    return bottom - int(std::lround(f * (bottom - top)));
  }
  /// The pixel (x, y) at which the point (step, loss) is drawn; loss must be plottable.
  std::pair<int, int> to_pixel(std::int64_t step, double loss) const {
    return {pixel_x(double(step)), pixel_y(loss)};
  }
};

/// The geometry write_loss_png draws with; throws value_error for what it rejects (file comment).
inline plot_geometry make_plot_geometry(const std::vector<plot_series>& series,
                                        const plot_options& o) {
  using einlm::detail::concat;
  if (o.width < 64 || o.height < 64 || o.width > 16384 || o.height > 16384)
    throw value_error(
        concat("write_loss_png: the image size must be 64 to 16384 pixels each way, got ", o.width,
               "x", o.height));
  if (series.empty()) throw value_error("write_loss_png: no series to plot");
  plot_geometry g;
  g.width = o.width;
  g.height = o.height;
  g.log_y = o.log_y;
  bool any = false;
  double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 0;
  for (const plot_series& s : series)
    for (const auto& [step, loss] : s.points) {
      if (!g.plottable(loss)) continue;
      const double x = double(step), y = g.y_of(loss);
      if (!any) {
        x_lo = x_hi = x;
        y_lo = y_hi = y;
        any = true;
      }
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      y_lo = std::min(y_lo, y);
      y_hi = std::max(y_hi, y);
    }
  if (!any)
    throw value_error(
        o.log_y ? "write_loss_png: no point to plot (every loss is NaN, infinite or not positive, "
                  "and log_y is set)"
                : "write_loss_png: no point to plot (every loss is NaN or infinite)");
  if (!std::isfinite(y_hi - y_lo))
    throw value_error("write_loss_png: the range of the losses is not finite");
  if (x_lo == x_hi) {
    x_lo -= 1;
    x_hi += 1;
  }
  const double pad = y_hi > y_lo ? 0.05 * (y_hi - y_lo)
                     : o.log_y   ? 0.5
                     : y_lo == 0 ? 1.0
                                 : 0.1 * std::abs(y_lo);
  g.x_min = x_lo;
  g.x_max = x_hi;
  g.y_min = y_lo - pad;
  g.y_max = y_hi + pad;
  if (!o.log_y && y_lo >= 0 && g.y_min < 0) g.y_min = 0;  // losses ≥ 0: no negative axis

  // Vertical layout: title above, tick labels and "step" below; then the y ticks, whose labels
  // decide the left margin; then the x ticks.
  g.top = std::min(32, o.height / 4);
  g.bottom = o.height - 1 - std::min(34, o.height / 4);
  const int y_target = std::max(2, (g.bottom - g.top) / 50);
  g.y_ticks =
      o.log_y ? log_ticks(g.y_min, g.y_max, y_target) : nice_ticks(g.y_min, g.y_max, y_target);
  int label_w = 0;
  for (const double v : g.y_ticks.values) {
    g.y_labels.push_back(tick_label(v, g.y_ticks.step));
    label_w = std::max(label_w, text_width(g.y_labels.back()));
  }
  g.left = std::min(label_w + 14, o.width / 3);
  g.right = o.width - 1 - std::min(20, o.width / 8);
  const int x_target = std::max(2, (g.right - g.left) / 90);
  g.x_ticks = nice_ticks(g.x_min, g.x_max, x_target, 1.0);
  for (const double v : g.x_ticks.values) g.x_labels.push_back(tick_label(v, g.x_ticks.step));
  return g;
}

/// The plot as a raster (see the file comment).
inline rgb_image render_loss_plot(const std::vector<plot_series>& series, const plot_options& o) {
  const plot_geometry g = make_plot_geometry(series, o);
  constexpr std::uint32_t white = 0xFFFFFF, grid = 0xE3E3E3, frame = 0x404040, text = 0x202020;
  rgb_image img(o.width, o.height, white);

  // Grid, frame, ticks and their labels.
  for (const double v : g.x_ticks.values) {
    const int x = g.pixel_x(v);
    img.fill(x, g.top, x, g.bottom, grid);
  }
  for (const double v : g.y_ticks.values) {
    const int y = g.pixel_y(v);
    img.fill(g.left, y, g.right, y, grid);
  }
  img.fill(g.left - 1, g.top - 1, g.right + 1, g.top - 1, frame);
  img.fill(g.left - 1, g.bottom + 1, g.right + 1, g.bottom + 1, frame);
  img.fill(g.left - 1, g.top - 1, g.left - 1, g.bottom + 1, frame);
  img.fill(g.right + 1, g.top - 1, g.right + 1, g.bottom + 1, frame);
  for (std::size_t i = 0; i < g.x_ticks.values.size(); ++i) {
    const int x = g.pixel_x(g.x_ticks.values[i]);
    img.fill(x, g.bottom + 2, x, g.bottom + 5, frame);
    draw_text(img, x - text_width(g.x_labels[i]) / 2, g.bottom + 8, g.x_labels[i], text);
  }
  for (std::size_t i = 0; i < g.y_ticks.values.size(); ++i) {
    const int y = g.pixel_y(g.y_ticks.values[i]);
    img.fill(g.left - 5, y, g.left - 2, y, frame);
    draw_text(img, g.left - 8 - text_width(g.y_labels[i]), y - 3, g.y_labels[i], text);
  }
  draw_text(img, (g.left + g.right - text_width("step")) / 2, g.bottom + 20, "step", text);
  const int title_scale = text_width(o.title, 2) <= o.width - 16 ? 2 : 1;
  draw_text(img, (o.width - text_width(o.title, title_scale)) / 2,
            std::max(0, (g.top - 7 * title_scale) / 2), o.title, text, title_scale);

  // The series, in order (a later one draws over an earlier one).
  for (const plot_series& s : series) {
    bool have_prev = false;
    int px = 0, py = 0, drawn = 0;
    for (const auto& [step, loss] : s.points) {
      if (!g.plottable(loss)) continue;
      const auto [x, y] = g.to_pixel(step, loss);
      if (have_prev) draw_line(img, px, py, x, y, s.rgb, g.left, g.top, g.right, g.bottom);
      px = x;
      py = y;
      have_prev = true;
      ++drawn;
    }
    if (drawn == 1)  // a lone point: a 4 × 4 mark
      for (int y = py - 1; y <= py + 2; ++y)
        for (int x = px - 1; x <= px + 2; ++x)
          if (x >= g.left && x <= g.right && y >= g.top && y <= g.bottom) img.set(x, y, s.rgb);
  }

  // The legend: a boxed list of colour swatches and labels in the corner of the plot area that
  // covers the fewest drawn pixels (top right, top left, bottom right, bottom left, in that order
  // of preference); left out when it does not fit in the plot area.
  int label_w = 0;
  for (const plot_series& s : series) label_w = std::max(label_w, text_width(s.label));
  const int box_w = 8 + 18 + 5 + label_w + 8, box_h = 6 + 12 * int(series.size());
  if (box_w + 16 > g.right - g.left || box_h + 16 > g.bottom - g.top) return img;
  const int corners[4][2] = {{g.right - 8 - box_w, g.top + 8},
                             {g.left + 8, g.top + 8},
                             {g.right - 8 - box_w, g.bottom - 8 - box_h},
                             {g.left + 8, g.bottom - 8 - box_h}};
  int bx = corners[0][0], by = corners[0][1];
  long fewest = -1;
  for (const auto& corner : corners) {
    long covered = 0;
    for (int y = corner[1]; y <= corner[1] + box_h; ++y)
      for (int x = corner[0]; x <= corner[0] + box_w; ++x)
        covered += img.get(x, y) != white && img.get(x, y) != grid;
    if (fewest < 0 || covered < fewest) {
      fewest = covered;
      bx = corner[0];
      by = corner[1];
    }
  }
  img.fill(bx, by, bx + box_w, by + box_h, 0xA0A0A0);
  img.fill(bx + 1, by + 1, bx + box_w - 1, by + box_h - 1, white);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const int row = by + 6 + 12 * int(i);
    img.fill(bx + 8, row + 2, bx + 8 + 17, row + 4, series[i].rgb);
    draw_text(img, bx + 8 + 18 + 5, row, series[i].label, text);
  }
  return img;
}

/// CRC-32 (ISO 3309, as PNG uses it), table-driven.
inline constexpr std::array<std::uint32_t, 256> crc32_table = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[n] = c;
  }
  return t;
}();

inline std::uint32_t crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0) {
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = crc32_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline std::uint32_t adler32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t a = 1, b = 0;
  while (n > 0) {
    const std::size_t chunk = std::min<std::size_t>(n, 5552);  // no overflow before the modulo
    for (std::size_t i = 0; i < chunk; ++i) {
      a += p[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
    p += chunk;
    n -= chunk;
  }
  return (b << 16) | a;
}

/// Bits to bytes, least significant bit first (deflate's order).
class bit_writer {
 public:
  explicit bit_writer(std::vector<std::uint8_t>& out) : out_(out) {}
  void put(std::uint32_t bits, int count) {
    acc_ |= bits << n_;
    n_ += count;
    while (n_ >= 8) {
      out_.push_back(std::uint8_t(acc_));
      acc_ >>= 8;
      n_ -= 8;
    }
  }
  /// A Huffman code, which deflate stores most significant bit first.
  void put_code(std::uint32_t code, int length) {
    std::uint32_t r = 0;
    for (int i = 0; i < length; ++i) r = (r << 1) | ((code >> i) & 1);
    put(r, length);
  }
  void flush() {
    if (n_ > 0) out_.push_back(std::uint8_t(acc_));
    acc_ = 0;
    n_ = 0;
  }

 private:
  std::vector<std::uint8_t>& out_;
  std::uint32_t acc_ = 0;
  int n_ = 0;
};

/// A literal/length symbol (0 … 287) in deflate's fixed Huffman code.
inline void put_fixed_symbol(bit_writer& w, int v) {
  if (v < 144)
    w.put_code(std::uint32_t(0x30 + v), 8);
  else if (v < 256)
    w.put_code(std::uint32_t(0x190 + v - 144), 9);
  else if (v < 280)
    w.put_code(std::uint32_t(v - 256), 7);
  else
    w.put_code(std::uint32_t(0xC0 + v - 280), 8);
}

/// A zlib stream (RFC 1950) of `data`: one fixed-Huffman deflate block (RFC 1951) whose matches
/// repeat the previous byte, the previous pixel (3 bytes back) or the row above (`row_bytes` back).
inline std::vector<std::uint8_t> zlib_compress(const std::vector<std::uint8_t>& data,
                                               std::size_t row_bytes) {
  static constexpr int len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                       15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                       67, 83, 99, 115, 131, 163, 195, 227, 258};
  static constexpr int len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                        2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static constexpr int dist_base[30] = {
      1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
      193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static constexpr int dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                         6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  std::vector<std::uint8_t> out = {0x78,
                                   0x01};  // deflate, 32 KiB window; (0x78 << 8 | 0x01) % 31 == 0
  out.reserve(data.size() / 8 + 64);
  bit_writer w(out);
  w.put(1, 1);  // BFINAL
  w.put(1, 2);  // BTYPE = 01, fixed Huffman codes
  const std::size_t n = data.size();
  const std::size_t candidates[3] = {1, 3, row_bytes};
  std::size_t i = 0;
  while (i < n) {
    std::size_t best = 0, best_d = 0;
    const std::size_t most = std::min<std::size_t>(258, n - i);
    for (const std::size_t d : candidates) {
      if (d == 0 || d > i || d > 32768) continue;
      std::size_t len = 0;
      while (len < most && data[i + len] == data[i + len - d]) ++len;
      if (len > best) {
        best = len;
        best_d = d;
      }
    }
    if (best < 3) {
      put_fixed_symbol(w, data[i]);
      ++i;
      continue;
    }
    int li = 28;
    while (len_base[li] > int(best)) --li;
    put_fixed_symbol(w, 257 + li);
    w.put(std::uint32_t(int(best) - len_base[li]), len_extra[li]);
    int di = 29;
    while (dist_base[di] > int(best_d)) --di;
    w.put_code(std::uint32_t(di), 5);
    w.put(std::uint32_t(int(best_d) - dist_base[di]), dist_extra[di]);
    i += best;
  }
  put_fixed_symbol(w, 256);  // end of block
  w.flush();
  const std::uint32_t adler = adler32(data.data(), data.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(std::uint8_t(adler >> shift));
  return out;
}

/// The PNG file (8-bit RGB, no interlace, filter 0 on every row) of `img`.
inline std::vector<std::uint8_t> encode_png(const rgb_image& img) {
  const std::size_t row_bytes = std::size_t(img.width) * 3 + 1;
  std::vector<std::uint8_t> raw(row_bytes * std::size_t(img.height));
  for (int y = 0; y < img.height; ++y) {
    raw[std::size_t(y) * row_bytes] = 0;  // filter type 0: none
    std::copy_n(img.pixels.begin() + std::ptrdiff_t(std::size_t(y) * std::size_t(img.width) * 3),
                img.width * 3, raw.begin() + std::ptrdiff_t(std::size_t(y) * row_bytes + 1));
  }
  std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  auto be32 = [](std::vector<std::uint8_t>& v, std::uint32_t x) {
    for (int shift = 24; shift >= 0; shift -= 8) v.push_back(std::uint8_t(x >> shift));
  };
  auto chunk = [&](const char* type, const std::vector<std::uint8_t>& body) {
    be32(png, std::uint32_t(body.size()));
    const std::size_t start = png.size();
    png.insert(png.end(), type, type + 4);
    png.insert(png.end(), body.begin(), body.end());
    be32(png, crc32(png.data() + start, png.size() - start));
  };
  std::vector<std::uint8_t> ihdr;
  be32(ihdr, std::uint32_t(img.width));
  be32(ihdr, std::uint32_t(img.height));
  ihdr.insert(
      ihdr.end(),
      {8, 2, 0, 0, 0});  // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
  chunk("IHDR", ihdr);
  chunk("IDAT", zlib_compress(raw, row_bytes));
  chunk("IEND", {});
  return png;
}

}  // namespace detail

/// Draws `series` (losses against steps) and writes the plot to `path` as a PNG, atomically.
inline void write_loss_png(const std::string& path, const std::vector<plot_series>& series,
                           const plot_options& options = {}) {
  const std::vector<std::uint8_t> png =
      detail::encode_png(detail::render_loss_plot(series, options));
  einlm::detail::write_file_atomically(path, {{png.data(), png.size()}});
}

}  // namespace einlm::train
