// einlm/tokenizer.hpp — umbrella header of the tokenizer layer: byte-level BPE with GPT-2
// pre-tokenization (training, encoding, streaming, decoding, file formats). Host code only; needs
// nothing beyond the C++ standard library. See docs/tokenizer.md.
//
//   tokenizer/common.hpp       tokenizer_error, token_id
//   tokenizer/utf8.hpp         strict UTF-8, Python-compatible repair (U+FFFD)
//   tokenizer/unicode_tables.hpp  Unicode 15.0 classes (generated)
//   tokenizer/pretokenize.hpp  the GPT-2 pre-tokenizer
//   tokenizer/bpe.hpp          bpe_model, bpe_tokenizer (encode/decode, special tokens, threads)
//   tokenizer/stream.hpp       stream_encoder, encode_stream
//   tokenizer/bpe_train.hpp    bpe_trainer, train_bpe
//   tokenizer/formats.hpp      GPT-2 vocab.json/merges.txt, tiktoken, HF tokenizer.json
#pragma once

#include "einlm/tokenizer/bpe.hpp"
#include "einlm/tokenizer/bpe_train.hpp"
#include "einlm/tokenizer/common.hpp"
#include "einlm/tokenizer/formats.hpp"
#include "einlm/tokenizer/pretokenize.hpp"
#include "einlm/tokenizer/stream.hpp"
#include "einlm/tokenizer/utf8.hpp"
