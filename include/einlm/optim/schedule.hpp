// einlm/optim/schedule.hpp — learning-rate schedules: the learning rate of iteration `it`.
//
//   cosine_schedule{max_lr, min_lr, warmup_iters, cosine_cycle_iters}(it)
//       CS336's get_lr_cosine_schedule, exactly: it < warmup: it / warmup · max_lr (a linear
//       warm-up from 0); warmup ≤ it ≤ cycle: min_lr + ½(1 + cos(π (it − warmup) / (cycle −
//       warmup))) (max_lr − min_lr); it > cycle: min_lr
//   constant_schedule{lr}(it)
//   wsd_schedule{max_lr, min_lr, warmup_iters, stable_iters, decay_iters}(it)
//       warmup-stable-decay: the same linear warm-up, max_lr for stable_iters iterations, then a
//       linear decay to min_lr over decay_iters iterations, min_lr afterwards
// Every schedule is a constexpr-constructible aggregate with `double operator()(std::int64_t)`;
// invalid settings (negative rates or lengths, cycle < warmup) raise einlm::value_error from
// check(), which the trainer calls once.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

#include "einlm/core/error.hpp"

namespace einlm::optim {

struct cosine_schedule {
  double max_lr = 1e-3;
  double min_lr = 1e-4;
  std::int64_t warmup_iters = 0;
  std::int64_t cosine_cycle_iters = 1;

  double operator()(std::int64_t it) const {
    if (it < warmup_iters) return static_cast<double>(it) / static_cast<double>(warmup_iters) * max_lr;
    if (it > cosine_cycle_iters) return min_lr;
    if (cosine_cycle_iters == warmup_iters) return max_lr;
    const double progress =
        static_cast<double>(it - warmup_iters) / static_cast<double>(cosine_cycle_iters - warmup_iters);
    return min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) * (max_lr - min_lr);
  }
  void check() const {
    if (!(max_lr >= 0) || !(min_lr >= 0) || warmup_iters < 0 || cosine_cycle_iters < warmup_iters)
      throw value_error(einlm::detail::concat("cosine_schedule: need max_lr ≥ 0, min_lr ≥ 0 and 0 ≤ warmup_iters ≤ "
                                       "cosine_cycle_iters; got max_lr ", max_lr, ", min_lr ", min_lr, ", warmup_iters ",
                                       warmup_iters, ", cosine_cycle_iters ", cosine_cycle_iters));
  }
};

struct constant_schedule {
  double lr = 1e-3;
  double operator()(std::int64_t) const { return lr; }
  void check() const {
    if (!(lr >= 0)) throw value_error(einlm::detail::concat("constant_schedule: the learning rate must be ≥ 0, got ", lr));
  }
};

struct wsd_schedule {
  double max_lr = 1e-3;
  double min_lr = 0;
  std::int64_t warmup_iters = 0;
  std::int64_t stable_iters = 0;
  std::int64_t decay_iters = 0;

  double operator()(std::int64_t it) const {
    if (it < warmup_iters) return static_cast<double>(it) / static_cast<double>(warmup_iters) * max_lr;
    const std::int64_t decay_start = warmup_iters + stable_iters;
    if (it <= decay_start) return max_lr;
    if (it >= decay_start + decay_iters) return min_lr;
    const double progress = static_cast<double>(it - decay_start) / static_cast<double>(decay_iters);
    return max_lr + progress * (min_lr - max_lr);
  }
  void check() const {
    if (!(max_lr >= 0) || !(min_lr >= 0) || warmup_iters < 0 || stable_iters < 0 || decay_iters < 0)
      throw value_error(einlm::detail::concat("wsd_schedule: rates and lengths must be ≥ 0; got max_lr ", max_lr, ", min_lr ",
                                       min_lr, ", warmup_iters ", warmup_iters, ", stable_iters ", stable_iters,
                                       ", decay_iters ", decay_iters));
  }
};

}  // namespace einlm::optim
