/* tokenizer.h — Hugging Face tokenizer.json, encoded exactly as `tokenizers` does.
 *
 * Supported: byte-level BPE (GPT-2/Qwen: NFC normalizer, Split regex pre-tokenizer,
 * ByteLevel, merges) and SentencePiece-style BPE (Llama-2/Mistral: Metaspace or
 * Replace+Prepend normalizer, byte_fallback), with added/special tokens recognised
 * inside text. */
#ifndef KVANT_TOKENIZER_H
#define KVANT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/err.h"

typedef struct kv_tokenizer kv_tokenizer;

/* A growable id buffer; kv_ids_free releases it. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} kv_ids;
void kv_ids_free(kv_ids *ids);
kv_status kv_ids_push(kv_ids *ids, int32_t id, kv_err *err);

/* path: a tokenizer.json file or a directory containing one. */
kv_status kv_tok_load(const char *path, kv_tokenizer **out, kv_err *err);
void kv_tok_free(kv_tokenizer *t); /* accepts NULL */

#define KV_TOK_ADD_SPECIAL 1 /* apply the post-processor (e.g. Llama's BOS), like add_special_tokens=True */

/* Append the ids of text[0..len) to ids. Thread-safe for concurrent calls on one
 * tokenizer. text must be valid UTF-8: otherwise KV_EINVAL with the byte offset of the
 * first bad sequence (HF only accepts str), and ids is left as it was. */
kv_status kv_tok_encode(const kv_tokenizer *t, const char *text, size_t len, int flags,
                        kv_ids *ids, kv_err *err);
/* Decode ids to a malloc'd NUL-terminated UTF-8 string (skip_special_tokens=False,
 * as HF decode does by default). An id with no token is KV_ERANGE (HF skips it). */
kv_status kv_tok_decode(const kv_tokenizer *t, const int32_t *ids, size_t n, char **out,
                        size_t *out_len, kv_err *err);
int64_t kv_tok_vocab_size(const kv_tokenizer *t); /* largest id + 1, added tokens included */
/* raw vocab string or NULL; an added token with normalized=true comes back normalized,
 * as HF's id_to_token gives it */
const char *kv_tok_id_to_piece(const kv_tokenizer *t, int32_t id);
int32_t kv_tok_piece_to_id(const kv_tokenizer *t, const char *piece); /* -1 if absent */

#endif
