// einlm/einlm.hpp — the umbrella header: everything einlm offers.
#pragma once

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/memory.hpp"
#include "einlm/core/npy.hpp"
#include "einlm/core/print.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg.hpp"
