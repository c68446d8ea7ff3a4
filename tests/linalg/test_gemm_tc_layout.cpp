// CPU tests of the tensor-core GEMM kernel's geometry (einlm/linalg/gemm_tc_layout.hpp), which no
// machine of the CI has a GPU to run: the shared-memory swizzles are bijections and free of bank
// conflicts for ldmatrix; the cp.async chunks cover each tile once; the CTA raster visits every
// tile once; and an emulated warp — ldmatrix and mma.sync.m16n8k16 modelled from the PTX ISA's
// fragment tables, fed through the kernel's own address functions — computes the exact product for
// all four operand layouts.
#include <doctest/doctest.h>

#include <array>
#include <random>
#include <set>
#include <vector>

#include "einlm/linalg/gemm_tc_layout.hpp"

using namespace einlm::detail::tc;

namespace {

// ------------------------------------------------------------------ PTX models (from the ISA)

using regs4 = std::array<std::array<double, 2>, 4>;  // four .b32 registers of two 16-bit values

/// ldmatrix.sync.aligned.m8n8.x4[.trans].b16: lanes 8q … 8q+7 give the row addresses (element
/// offsets) of matrix q; without .trans lane l receives row l/4, columns 2(l%4) and 2(l%4)+1 of
/// each matrix, with .trans the transposed matrix's (column l/4, rows 2(l%4), 2(l%4)+1).
std::array<regs4, 32> ldmatrix_x4(const std::vector<double>& smem, const std::array<int, 32>& address, bool trans) {
  std::array<regs4, 32> out{};
  for (int l = 0; l < 32; ++l)
    for (int q = 0; q < 4; ++q)
      for (int e = 0; e < 2; ++e) {
        const int row = trans ? 2 * (l % 4) + e : l / 4;
        const int col = trans ? l / 4 : 2 * (l % 4) + e;
        out[l][q][e] = smem[static_cast<std::size_t>(address[8 * q + row] + col)];
      }
  return out;
}

/// mma.sync.aligned.m16n8k16.row.col: lane l (g = l/4, t = l%4) holds A's a0,a1 = (g, 2t..2t+1),
/// a2,a3 = (g+8, 2t..), a4,a5 = (g, 2t+8..), a6,a7 = (g+8, 2t+8..); B's b0,b1 = (k 2t..2t+1, n g),
/// b2,b3 = (k 2t+8.., n g); C's c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..).
void mma_16816(std::array<std::array<double, 4>, 32>& d, const std::array<regs4, 32>& a,
               const std::array<std::array<std::array<double, 2>, 2>, 32>& b) {
  double A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * t + e] = a[l][0][e];
      A[g + 8][2 * t + e] = a[l][1][e];
      A[g][2 * t + 8 + e] = a[l][2][e];
      A[g + 8][2 * t + 8 + e] = a[l][3][e];
      B[2 * t + e][g] = b[l][0][e];
      B[2 * t + 8 + e][g] = b[l][1][e];
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int r = 0; r < 4; ++r) {
      const int row = g + (r >= 2 ? 8 : 0), col = 2 * t + (r & 1);
      for (int k = 0; k < 16; ++k) d[l][r] += A[row][k] * B[k][col];
    }
  }
}

// ------------------------------------------------------------------------------ helpers

/// The 16-byte bank group (0…7) of an element offset of a 16-bit tile.
int bank_group(int offset) { return (offset * 2 / 16) % 8; }

template <int RowElems, int Rows>
void check_swizzle_bijection() {
  std::set<int> seen;
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < RowElems / CHUNK; ++c) {
      const int o = swizzled<RowElems>(r, c);
      CHECK(o % CHUNK == 0);
      CHECK(o / RowElems == r);  // stays in its row
      seen.insert(o);
    }
  CHECK(seen.size() == static_cast<std::size_t>(Rows * RowElems / CHUNK));
}

/// Every 8-lane phase of an ldmatrix.x4 reads 8 distinct bank groups, and every address is a
/// whole 16-byte chunk.
template <class F>
void check_conflict_free(F address_of) {
  for (int phase = 0; phase < 4; ++phase) {
    std::set<int> groups;
    for (int l = 8 * phase; l < 8 * phase + 8; ++l) {
      const int o = address_of(l);
      CHECK(o % CHUNK == 0);
      groups.insert(bank_group(o));
    }
    CHECK(groups.size() == 8);
  }
}

/// The shared-memory image of a tile as the kernel's cp.async loop writes it; value(mn, k) is the
/// operand element at tile coordinates (mn along M or N, k along K).
template <bool KMajor, int Rows, class V>
std::vector<double> fill_tile(V value) {
  std::vector<double> smem(static_cast<std::size_t>(Rows * BK), std::numeric_limits<double>::quiet_NaN());
  for (int c = 0; c < Rows * BK / CHUNK; ++c) {
    const chunk_slot s = tile_chunk<KMajor, Rows>(c);
    for (int e = 0; e < CHUNK; ++e)
      smem[static_cast<std::size_t>(s.offset + e)] = KMajor ? value(s.mn, s.k + e) : value(s.mn + e, s.k);
  }
  return smem;
}

/// Runs the whole CTA tile through the emulated warps and compares with the exact product.
template <class Shape, bool AK, bool BKM>
void emulate_cta() {
  constexpr int BM = Shape::BM, BN = Shape::BN;
  std::mt19937 rng(AK * 2 + BKM);
  std::uniform_int_distribution<int> dist(-8, 8);  // small integers: every sum is exact
  std::vector<double> A(static_cast<std::size_t>(BM * BK)), B(static_cast<std::size_t>(BK * BN));
  for (auto& x : A) x = dist(rng);
  for (auto& x : B) x = dist(rng);
  const auto a_smem = fill_tile<AK, BM>([&](int m, int k) { return A[static_cast<std::size_t>(m * BK + k)]; });
  const auto b_smem = fill_tile<BKM, BN>([&](int n, int k) { return B[static_cast<std::size_t>(k * BN + n)]; });
  for (double x : a_smem) REQUIRE(x == x);  // every element written
  for (double x : b_smem) REQUIRE(x == x);
  for (int warp = 0; warp < Shape::WARPS_M * Shape::WARPS_N; ++warp) {
    const int wm = (warp / Shape::WARPS_N) * WM, wn = (warp % Shape::WARPS_N) * WN;
    std::array<std::array<double, 4>, 32> acc[MI][NI] = {};
    for (int ks = 0; ks < BK; ks += 16) {
      std::array<regs4, 32> af[MI];
      std::array<std::array<std::array<double, 2>, 2>, 32> bf[NI];
      for (int mi = 0; mi < MI; ++mi) {
        std::array<int, 32> addr{};
        for (int l = 0; l < 32; ++l) addr[l] = a_fragment_offset<AK, BM>(l, wm, mi, ks);
        af[mi] = ldmatrix_x4(a_smem, addr, !AK);
      }
      for (int pr = 0; pr < NI / 2; ++pr) {
        std::array<int, 32> addr{};
        for (int l = 0; l < 32; ++l) addr[l] = b_fragment_offset<BKM, BN>(l, wn, pr, ks);
        const auto r = ldmatrix_x4(b_smem, addr, !BKM);
        for (int l = 0; l < 32; ++l) {
          bf[2 * pr][l] = {r[l][0], r[l][1]};
          bf[2 * pr + 1][l] = {r[l][2], r[l][3]};
        }
      }
      for (int mi = 0; mi < MI; ++mi)
        for (int ni = 0; ni < NI; ++ni) mma_16816(acc[mi][ni], af[mi], bf[ni]);
    }
    int wrong = 0;
    for (int mi = 0; mi < MI; ++mi)
      for (int ni = 0; ni < NI; ++ni)
        for (int l = 0; l < 32; ++l)
          for (int r = 0; r < 4; ++r) {
            const int i = wm + mi * 16 + acc_row(l, r), j = wn + ni * 8 + acc_col(l, r);
            double want = 0;
            for (int k = 0; k < BK; ++k) want += A[static_cast<std::size_t>(i * BK + k)] * B[static_cast<std::size_t>(k * BN + j)];
            wrong += acc[mi][ni][l][r] != want;
          }
    INFO("tile ", BM, "x", BN, " warp ", warp, " A k-major ", AK, " B k-major ", BKM);
    CHECK(wrong == 0);
  }
}

template <class Shape>
void check_shape() {
  constexpr int BM = Shape::BM, BN = Shape::BN;
  INFO("tile ", BM, "x", BN);
  static_assert(Shape::THREADS == 32 * (BM / WM) * (BN / WN) && MI == 4 && NI == 8);
  static_assert(Shape::SMEM_BYTES >= Shape::PIPE_BYTES && Shape::SMEM_BYTES >= Shape::OUT_BYTES);
  CHECK(Shape::OUT_PITCH % 2 == 0);  // float2 stores stay aligned

  // Swizzles are bijections within each row, for both operand tiles in both layouts.
  check_swizzle_bijection<BK, BM>();
  check_swizzle_bijection<BK, BN>();
  check_swizzle_bijection<BM, BK>();
  check_swizzle_bijection<BN, BK>();

  // cp.async chunks cover each operand tile exactly once.
  const auto cover = [](auto k_major_tag, auto rows_tag) {
    constexpr bool k_major = decltype(k_major_tag)::value;
    constexpr int rows = decltype(rows_tag)::value;
    std::set<int> offsets;
    std::set<std::pair<int, int>> starts;
    for (int c = 0; c < rows * BK / CHUNK; ++c) {
      const chunk_slot s = tile_chunk<k_major, rows>(c);
      offsets.insert(s.offset);
      starts.insert({s.mn, s.k});
      CHECK((k_major ? s.k : s.mn) % CHUNK == 0);
      CHECK(s.mn < rows);
      CHECK(s.k < BK);
    }
    CHECK(offsets.size() == static_cast<std::size_t>(rows * BK / CHUNK));
    CHECK(starts.size() == static_cast<std::size_t>(rows * BK / CHUNK));
  };
  cover(std::true_type{}, std::integral_constant<int, BM>{});
  cover(std::false_type{}, std::integral_constant<int, BM>{});
  cover(std::true_type{}, std::integral_constant<int, BN>{});
  cover(std::false_type{}, std::integral_constant<int, BN>{});

  // ldmatrix addresses are free of bank conflicts in every layout.
  for (int ks = 0; ks < BK; ks += 16) {
    for (int wm = 0; wm < BM; wm += WM)
      for (int mi = 0; mi < MI; ++mi) {
        check_conflict_free([&](int l) { return a_fragment_offset<true, BM>(l, wm, mi, ks); });
        check_conflict_free([&](int l) { return a_fragment_offset<false, BM>(l, wm, mi, ks); });
      }
    for (int wn = 0; wn < BN; wn += WN)
      for (int pr = 0; pr < NI / 2; ++pr) {
        check_conflict_free([&](int l) { return b_fragment_offset<true, BN>(l, wn, pr, ks); });
        check_conflict_free([&](int l) { return b_fragment_offset<false, BN>(l, wn, pr, ks); });
      }
  }

  // float2 stores of one warp's accumulators (8 rows × 4 lanes) into rows of OUT_PITCH floats:
  // 32 distinct 8-byte slots within two 128-byte wavefronts' worth of banks.
  std::set<int> slots;
  for (int l = 0; l < 32; ++l) slots.insert((acc_row(l, 0) * Shape::OUT_PITCH + acc_col(l, 0)) % 64);
  CHECK(slots.size() == 32);
}

}  // namespace

TEST_CASE("tile shapes: swizzles, chunk copies, conflict-free ldmatrix and epilogue stores") {
  check_shape<tile_128x128>();
  check_shape<tile_128x256>();
}

TEST_CASE("accumulator pairs are adjacent columns of one row (the epilogue's float2 stores)") {
  for (int l = 0; l < 32; ++l)
    for (int h = 0; h < 2; ++h) {
      CHECK(acc_row(l, 2 * h) == acc_row(l, 2 * h + 1));
      CHECK(acc_col(l, 2 * h + 1) == acc_col(l, 2 * h) + 1);
      CHECK(acc_col(l, 2 * h) % 2 == 0);
    }
}

TEST_CASE("the CTA raster visits every tile once") {
  for (long long tm : {1, 3, 8, 9, 17})
    for (long long tn : {1, 2, 7, 33}) {
      std::set<std::pair<long long, long long>> seen;
      for (long long pid = 0; pid < tm * tn; ++pid) {
        const tile_coord t = tile_of(pid, tm, tn);
        CHECK(t.tm >= 0);
        CHECK(t.tm < tm);
        CHECK(t.tn >= 0);
        CHECK(t.tn < tn);
        seen.insert({t.tm, t.tn});
      }
      CHECK(seen.size() == static_cast<std::size_t>(tm * tn));
    }
}

TEST_CASE("emulated CTAs compute the exact product through the kernel's addresses") {
  emulate_cta<tile_128x128, true, true>();
  emulate_cta<tile_128x128, true, false>();
  emulate_cta<tile_128x128, false, true>();
  emulate_cta<tile_128x128, false, false>();
  emulate_cta<tile_128x256, true, true>();
  emulate_cta<tile_128x256, true, false>();
  emulate_cta<tile_128x256, false, true>();
  emulate_cta<tile_128x256, false, false>();
}
