// einlm/einlm.hpp — the umbrella header of the tensor library: core, expressions, einops (with
// einsum) and linear algebra. The tokenizer, which needs none of them, has its own umbrella header,
// einlm/tokenizer.hpp.
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
#include "einlm/core/safetensors.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg.hpp"
