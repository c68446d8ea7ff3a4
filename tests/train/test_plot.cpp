// Tests of einlm/train/plot.hpp: the PNG is decoded here independently of the header — signature,
// IHDR, every chunk's CRC-32 (a bitwise implementation), the zlib header, a minimal inflate of
// stored and fixed-Huffman blocks, Adler-32, filter bytes — and then its pixels are checked: a
// white background, each series' colour present, and the series' colour at the pixel where
// detail::plot_geometry puts its first point. Constant series, single points, NaN/inf points and a
// log axis plot; an empty list, no finite point and bad sizes are value_errors, an unwritable path
// an io_error.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "einlm/core/file_io.hpp"
#include "einlm/train/plot.hpp"

using namespace einlm;

namespace {

std::string temp_path(const std::string& name) {
  const auto d = std::filesystem::path(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") /
                 "einlm_test_plot";
  std::filesystem::create_directories(d);
  std::filesystem::remove(d / name);
  return (d / name).string();
}

std::uint32_t bitwise_crc32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::uint32_t simple_adler32(const std::vector<std::uint8_t>& v) {
  std::uint32_t a = 1, b = 0;
  for (const std::uint8_t x : v) {
    a = (a + x) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

/// A minimal inflate (RFC 1951): stored and fixed-Huffman blocks; anything else fails the test.
struct inflater {
  const std::vector<std::uint8_t>& in;
  std::size_t pos = 0;  // in bits
  std::uint32_t bit() {
    REQUIRE(pos / 8 < in.size());
    const std::uint32_t b = (in[pos / 8] >> (pos % 8)) & 1u;
    ++pos;
    return b;
  }
  std::uint32_t bits(int n) {  // least significant bit first
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i) v |= bit() << i;
    return v;
  }
  std::uint32_t code(int n) {  // Huffman code: most significant bit first
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 1) | bit();
    return v;
  }
  int fixed_symbol() {
    std::uint32_t c = code(7);
    if (c <= 0x17) return int(256 + c);
    c = (c << 1) | bit();
    if (c >= 0x30 && c <= 0xBF) return int(c - 0x30);
    if (c >= 0xC0 && c <= 0xC7) return int(280 + c - 0xC0);
    c = (c << 1) | bit();
    REQUIRE(c >= 0x190);
    REQUIRE(c <= 0x1FF);
    return int(144 + c - 0x190);
  }
  std::vector<std::uint8_t> run() {
    static const int len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                     15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                     67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    std::vector<std::uint8_t> out;
    for (;;) {
      const std::uint32_t final_block = bit(), type = bits(2);
      if (type == 0) {
        pos = (pos + 7) / 8 * 8;
        const std::size_t b = pos / 8;
        REQUIRE(b + 4 <= in.size());
        const std::uint32_t len = in[b] | (in[b + 1] << 8), nlen = in[b + 2] | (in[b + 3] << 8);
        REQUIRE(len == (~nlen & 0xFFFFu));
        REQUIRE(b + 4 + len <= in.size());
        out.insert(out.end(), in.begin() + std::ptrdiff_t(b + 4),
                   in.begin() + std::ptrdiff_t(b + 4 + len));
        pos = (b + 4 + len) * 8;
      } else {
        REQUIRE(type == 1);  // the writer emits fixed-Huffman blocks only
        for (;;) {
          const int sym = fixed_symbol();
          if (sym < 256) {
            out.push_back(std::uint8_t(sym));
            continue;
          }
          if (sym == 256) break;
          REQUIRE(sym <= 285);
          const std::size_t len = std::size_t(len_base[sym - 257]) + bits(len_extra[sym - 257]);
          const std::uint32_t dcode = code(5);
          REQUIRE(dcode < 30);
          std::size_t dist = 1, extra = 0;
          if (dcode < 4) {
            dist = dcode + 1;
          } else {
            extra = (dcode - 2) / 2;
            dist = ((2 + (dcode & 1)) << extra) + 1;
          }
          dist += bits(int(extra));
          REQUIRE(dist <= out.size());
          for (std::size_t k = 0; k < len; ++k) out.push_back(out[out.size() - dist]);
        }
      }
      if (final_block) break;
    }
    pos = (pos + 7) / 8 * 8;
    return out;
  }
};

struct decoded_png {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
  std::uint32_t at(int x, int y) const {
    const std::uint8_t* p = &rgb[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * 3];
    return (std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | p[2];
  }
  std::size_t count(std::uint32_t colour) const {
    std::size_t n = 0;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) n += at(x, y) == colour;
    return n;
  }
};

decoded_png decode_png(const std::vector<std::uint8_t>& f) {
  static const std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  REQUIRE(f.size() > 8);
  for (int i = 0; i < 8; ++i) REQUIRE(f[std::size_t(i)] == signature[i]);
  decoded_png png;
  std::vector<std::uint8_t> idat;
  std::vector<std::string> types;
  std::size_t p = 8;
  while (p < f.size()) {
    REQUIRE(p + 12 <= f.size());
    const std::uint32_t len = be32(&f[p]);
    REQUIRE(p + 12 + len <= f.size());
    const std::string type(f.begin() + std::ptrdiff_t(p + 4), f.begin() + std::ptrdiff_t(p + 8));
    CHECK_MESSAGE(bitwise_crc32(&f[p + 4], 4 + len) == be32(&f[p + 8 + len]), "CRC of chunk ",
                  type);
    const std::uint8_t* body = &f[p + 8];
    if (type == "IHDR") {
      REQUIRE(len == 13);
      png.width = int(be32(body));
      png.height = int(be32(body + 4));
      CHECK(body[8] == 8);   // bit depth
      CHECK(body[9] == 2);   // RGB
      CHECK(body[10] == 0);  // deflate
      CHECK(body[11] == 0);  // filter method
      CHECK(body[12] == 0);  // no interlace
    } else if (type == "IDAT") {
      idat.insert(idat.end(), body, body + len);
    }
    types.push_back(type);
    p += 12 + len;
  }
  REQUIRE(types.size() >= 3);
  CHECK(types.front() == "IHDR");
  CHECK(types.back() == "IEND");
  // zlib: CM 8, a window of at most 32 KiB, no preset dictionary, FCHECK.
  REQUIRE(idat.size() >= 6);
  CHECK((idat[0] & 0x0F) == 8);
  CHECK((idat[0] >> 4) <= 7);
  CHECK((idat[1] & 0x20) == 0);
  CHECK((idat[0] * 256 + idat[1]) % 31 == 0);
  const std::vector<std::uint8_t> deflate(idat.begin() + 2, idat.end());
  inflater inf{deflate};
  const std::vector<std::uint8_t> raw = inf.run();
  REQUIRE(inf.pos / 8 + 4 == deflate.size());  // the Adler-32 and nothing after it
  CHECK(be32(&deflate[inf.pos / 8]) == simple_adler32(raw));
  const std::size_t row = std::size_t(png.width) * 3 + 1;
  REQUIRE(raw.size() == row * std::size_t(png.height));
  for (int y = 0; y < png.height; ++y) {
    REQUIRE(raw[std::size_t(y) * row] == 0);  // filter type 0
    png.rgb.insert(png.rgb.end(), raw.begin() + std::ptrdiff_t(std::size_t(y) * row + 1),
                   raw.begin() + std::ptrdiff_t(std::size_t(y + 1) * row));
  }
  return png;
}

decoded_png read_png(const std::string& path) {
  return decode_png(einlm::detail::read_file_bytes(path));
}

/// What train::fit returns, as far as the plot is concerned.
struct curves {
  std::vector<std::pair<std::int64_t, double>> losses, val_losses;
};

curves example_curves() {
  curves r;
  for (std::int64_t s = 0; s <= 1000; s += 10)
    r.losses.emplace_back(s, 1.5 + 4.0 * std::exp(-double(s) / 200.0));
  for (std::int64_t s = 0; s <= 1000; s += 100)
    r.val_losses.emplace_back(s, 1.8 + 4.0 * std::exp(-double(s) / 200.0));
  return r;
}

constexpr std::uint32_t white = 0xFFFFFF;

}  // namespace

TEST_CASE("write_loss_png: two series decode to a white plot with both colours at their points") {
  const curves r = example_curves();
  const std::string path = temp_path("two.png");
  // [snippet loss_png]
  train::write_loss_png(path,
                        {{"train", r.losses, 0x1f77b4}, {"validation", r.val_losses, 0xd62728}},
                        {.width = 800, .height = 480, .title = "tiny: loss"});
  // [end snippet]
  const decoded_png png = read_png(path);
  REQUIRE(png.width == 800);
  REQUIRE(png.height == 480);
  CHECK(png.at(0, 0) == white);
  CHECK(png.at(799, 479) == white);
  CHECK(png.count(white) > std::size_t(800 * 480 / 2));
  CHECK(png.count(0x1f77b4) > 200);
  CHECK(png.count(0xd62728) > 200);

  const std::vector<train::plot_series> series = {{"train", r.losses, 0x1f77b4},
                                                  {"validation", r.val_losses, 0xd62728}};
  const auto g = train::detail::make_plot_geometry(
      series, {.width = 800, .height = 480, .title = "tiny: loss"});
  CHECK(g.left > 0);
  CHECK(g.right < 799);
  CHECK(g.top > 0);
  CHECK(g.bottom < 479);
  CHECK(g.y_min <= 1.5);
  CHECK(g.y_max >= 5.8);
  const auto [x0, y0] = g.to_pixel(0, r.losses[0].second);
  CHECK(x0 == g.left);
  CHECK(png.at(x0, y0) == 0x1f77b4);
  const auto [vx0, vy0] = g.to_pixel(0, r.val_losses[0].second);
  CHECK(vy0 < y0);  // higher loss, higher up
  CHECK(png.at(vx0, vy0) == 0xd62728);
  const auto [xl, yl] = g.to_pixel(1000, r.losses.back().second);
  CHECK(xl == g.right);
  CHECK(yl > g.top + (g.bottom - g.top) / 2);  // the last loss is in the lower half
  // Ticks at 1, 2, 5 × 10^k, within the ranges.
  REQUIRE(g.x_ticks.values.size() >= 2);
  REQUIRE(g.y_ticks.values.size() >= 2);
  for (const double t : g.y_ticks.values) {
    CHECK(t >= g.y_min - 1e-9);
    CHECK(t <= g.y_max + 1e-9);
  }
  const double mantissa = g.y_ticks.step / std::pow(10.0, std::floor(std::log10(g.y_ticks.step)));
  CHECK((std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 ||
         std::abs(mantissa - 5) < 1e-9));
  // The frame is drawn around the plot area.
  CHECK(png.at(g.left - 1, (g.top + g.bottom) / 2) == 0x404040);
}

TEST_CASE(
    "write_loss_png: a constant series, NaN and infinite points, a single point, a log axis") {
  const double nan = std::numeric_limits<double>::quiet_NaN(),
               inf = std::numeric_limits<double>::infinity();
  const std::vector<train::plot_series> series = {
      {"constant", {{0, 2.0}, {1, nan}, {2, 2.0}, {3, inf}, {4, 2.0}}, 0x2ca02c},
      {"one point", {{2, nan}, {3, 2.5}}, 0x9467bd},
      {"empty", {}, 0x8c564b}};
  const std::string path = temp_path("constant.png");
  train::write_loss_png(path, series, {.width = 300, .height = 200});
  const decoded_png png = read_png(path);
  REQUIRE(png.width == 300);
  REQUIRE(png.height == 200);
  const auto g = train::detail::make_plot_geometry(series, {.width = 300, .height = 200});
  CHECK(g.x_min == 0);
  CHECK(g.x_max == 4);
  CHECK(g.y_min < 2.0);
  CHECK(g.y_max > 2.5);
  const auto [x0, y0] = g.to_pixel(0, 2.0);
  CHECK(png.at(x0, y0) == 0x2ca02c);
  const auto [x1, y1] = g.to_pixel(4, 2.0);
  CHECK(y1 == y0);
  CHECK(png.at(x1, y1) == 0x2ca02c);
  const auto [xp, yp] = g.to_pixel(3, 2.5);
  CHECK(png.at(xp, yp) == 0x9467bd);

  // One series of one value: the ranges still have a width.
  const std::vector<train::plot_series> lone = {{"x", {{7, 0.0}}, 0x000000}};
  const auto gl = train::detail::make_plot_geometry(lone, {.width = 64, .height = 64});
  CHECK(gl.x_min < 7);
  CHECK(gl.x_max > 7);
  CHECK(gl.y_max > 0);
  CHECK(gl.right > gl.left);
  CHECK(gl.bottom > gl.top);
  const std::string small = temp_path("lone.png");
  train::write_loss_png(small, lone, {.width = 64, .height = 64});
  const decoded_png lp = read_png(small);
  const auto [lx, ly] = gl.to_pixel(7, 0.0);
  CHECK(lp.at(lx, ly) == 0x000000);

  // log_y: a loss ≤ 0 is skipped; the ticks are powers of ten and their 2, 5 multiples.
  const std::vector<train::plot_series> decay = {
      {"loss", {{0, 100.0}, {10, 0.0}, {20, 1.0}, {30, 0.01}}, 0x1f77b4}};
  const std::string log_path = temp_path("log.png");
  train::write_loss_png(log_path, decay, {.title = "log loss", .log_y = true});
  const decoded_png lg = read_png(log_path);
  const auto gg = train::detail::make_plot_geometry(decay, {.title = "log loss", .log_y = true});
  const auto [a, ay] = gg.to_pixel(0, 100.0);
  const auto [b, by] = gg.to_pixel(20, 1.0);
  const auto [c, cy] = gg.to_pixel(30, 0.01);
  CHECK(lg.at(a, ay) == 0x1f77b4);
  CHECK(std::abs((by - ay) - (cy - by)) <= 1);  // two decades each way: equal distances
  CHECK(lg.at(c, cy) == 0x1f77b4);
  (void)b;
  for (const double t : gg.y_ticks.values) {
    const double m = t / std::pow(10.0, std::floor(std::log10(t) + 1e-12));
    CHECK((std::abs(m - 1) < 1e-9 || std::abs(m - 2) < 1e-9 || std::abs(m - 5) < 1e-9));
  }
}

TEST_CASE("write_loss_png: the encoder round-trips an arbitrary image") {
  train::detail::rgb_image img(97, 65, 0xFFFFFF);
  std::uint32_t state = 12345;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      state = state * 1664525u + 1013904223u;
      if ((state >> 28) < 6)
        img.set(x, y, state >> 8);  // noise
      else if ((state >> 28) < 10)
        img.set(x, y, x > 0 ? img.get(x - 1, y) : 0x123456);  // runs
    }
  const decoded_png png = decode_png(train::detail::encode_png(img));
  REQUIRE(png.width == 97);
  REQUIRE(png.height == 65);
  CHECK(png.rgb == img.pixels);
}

TEST_CASE("write_loss_png: errors") {
  const std::string path = temp_path("error.png");
  const std::vector<train::plot_series> ok = {{"train", {{0, 1.0}, {1, 0.5}}, 0x1f77b4}};
  CHECK_THROWS_WITH_AS(train::write_loss_png(path, {}), doctest::Contains("no series"),
                       value_error);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(
      train::write_loss_png(
          path, {{"bad", {{0, nan}, {1, -std::numeric_limits<double>::infinity()}}, 0}}),
      doctest::Contains("no point to plot"), value_error);
  CHECK_THROWS_WITH_AS(
      train::write_loss_png(path, {{"neg", {{0, -1.0}, {1, 0.0}}, 0}}, {.log_y = true}),
      doctest::Contains("log_y"), value_error);
  CHECK_THROWS_WITH_AS(train::write_loss_png(path, ok, {.width = 63}), doctest::Contains("63x480"),
                       value_error);
  CHECK_THROWS_WITH_AS(train::write_loss_png(path, ok, {.height = 0}),
                       doctest::Contains("image size"), value_error);
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_THROWS_AS(train::write_loss_png("/nonexistent-einlm-dir/loss.png", ok), io_error);
}
