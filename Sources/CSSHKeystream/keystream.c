#define _GNU_SOURCE
#include "CSSHKeystream.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* One cached keystream per counter-mode context; a session has two (one each way). */
/* BULK_BYTES: a call at least this long, met with an empty cache, goes straight to libcrypto. */
enum { KEYSTREAM_BYTES = 64 * 1024, SLOTS = 32, BULK_BYTES = 1024 };

typedef struct {
    const EVP_CIPHER_CTX *ctx;
    size_t pos, len;
    int style;  /* what EVP_Cipher returns on success: 1 (legacy) or the length (provider) */
    unsigned char bytes[KEYSTREAM_BYTES];
} keystream;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static keystream *table[SLOTS];
/* Bumped whenever an entry goes away, so a thread's remembered entry is re-checked. */
static atomic_ulong epoch = 1;
static atomic_ulong refills;
static const unsigned char zeros[KEYSTREAM_BYTES];
/* initial-exec: a plain %fs-relative access; the default model for -fPIC code calls
 * __tls_get_addr, which would cost more than the rest of the call. */
static __thread __attribute__((tls_model("initial-exec")))
struct { const EVP_CIPHER_CTX *ctx; keystream *entry; unsigned long epoch; } last;

typedef int (*cipher_fn)(EVP_CIPHER_CTX *, unsigned char *, const unsigned char *, unsigned int);
typedef void (*free_fn)(EVP_CIPHER_CTX *);
typedef int (*reset_fn)(EVP_CIPHER_CTX *);

static cipher_fn real_cipher;
static free_fn real_free;
static reset_fn real_reset;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;
static atomic_int is_resolved;

static void resolve(void) {
    real_cipher = (cipher_fn)dlsym(RTLD_NEXT, "EVP_Cipher");
    real_free = (free_fn)dlsym(RTLD_NEXT, "EVP_CIPHER_CTX_free");
    real_reset = (reset_fn)dlsym(RTLD_NEXT, "EVP_CIPHER_CTX_reset");
    atomic_store(&is_resolved, 1);
}

static inline void ensure_resolved(void) {
    if (__builtin_expect(!atomic_load_explicit(&is_resolved, memory_order_acquire), 0)) pthread_once(&resolved, resolve);
}

/* Drops ctx's keystream: it is being freed or given a new key. The cached bytes are key-derived
 * (XORed with a ciphertext they give the plaintext), so they are wiped before the memory goes
 * back to the allocator; 64 KiB once per context, not per packet. */
static void forget(const EVP_CIPHER_CTX *ctx) {
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < SLOTS; i++) {
        if (table[i] && table[i]->ctx == ctx) {
            OPENSSL_cleanse(table[i], sizeof *table[i]);
            free(table[i]);
            table[i] = NULL;
            atomic_fetch_add(&epoch, 1);
        }
    }
    pthread_mutex_unlock(&table_lock);
}

/* ctx's entry, made on first use for a counter-mode context; NULL: pass the call through. */
static keystream *entry_for(EVP_CIPHER_CTX *ctx) {
    unsigned long now = atomic_load(&epoch);
    if (last.ctx == ctx && last.epoch == now) return last.entry;
    keystream *found = NULL;
    pthread_mutex_lock(&table_lock);
    int freeSlot = -1;
    for (int i = 0; i < SLOTS; i++) {
        if (table[i] && table[i]->ctx == ctx) { found = table[i]; break; }
        if (!table[i] && freeSlot < 0) freeSlot = i;
    }
    if (!found && freeSlot >= 0 && EVP_CIPHER_CTX_get_mode(ctx) == EVP_CIPH_CTR_MODE) {
        found = malloc(sizeof *found);
        if (found) {
            found->ctx = ctx;
            found->pos = found->len = 0;
            found->style = 0;
            table[freeSlot] = found;
        }
    }
    now = atomic_load(&epoch);
    pthread_mutex_unlock(&table_lock);
    last.ctx = ctx; last.entry = found; last.epoch = now;
    return found;
}

int EVP_Cipher(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in, unsigned int inl) {
    ensure_resolved();
    keystream *k = (ctx && in && out && inl > 0) ? entry_for(ctx) : NULL;
    if (!k) return real_cipher(ctx, out, in, inl);
    if (inl == 16 && k->len - k->pos >= 16) {
        /* The hot path: one AES block, as libssh2 1.10 asks for it. */
        uint64_t a[2], b[2];
        memcpy(a, in, 16);
        memcpy(b, k->bytes + k->pos, 16);
        a[0] ^= b[0]; a[1] ^= b[1];
        memcpy(out, a, 16);
        k->pos += 16;
        return k->style == 1 ? 1 : 16;
    }
    unsigned int done = 0;
    while (done < inl) {
        if (k->pos == k->len && inl - done >= BULK_BYTES) {
            /* A whole packet in one call (the vendored libssh2's sends): libcrypto's own CTR is
             * faster than keystream plus XOR, and with nothing cached the context's counter is
             * exactly at this point of the stream. */
            int r = real_cipher(ctx, out + done, in + done, inl - done);
            if (r != 1 && r != (int)(inl - done)) return r;
            k->style = r == 1 ? 1 : 0;
            break;
        }
        if (k->pos == k->len) {
            int r = real_cipher(ctx, k->bytes, zeros, KEYSTREAM_BYTES);
            if (r != 1 && r != KEYSTREAM_BYTES) { k->pos = k->len = 0; return r; }
            k->style = r == 1 ? 1 : 0;
            k->pos = 0; k->len = KEYSTREAM_BYTES;
            atomic_fetch_add_explicit(&refills, 1, memory_order_relaxed);
        }
        size_t n = k->len - k->pos;
        if (n > inl - done) n = inl - done;
        const unsigned char *s = k->bytes + k->pos;
        for (size_t i = 0; i < n; i++) out[done + i] = in[done + i] ^ s[i];
        k->pos += n;
        done += (unsigned int)n;
    }
    return k->style == 1 ? 1 : (int)inl;
}

/* Every way to give a context a new key or IV forgets its keystream first (libssh2 1.10 uses
 * EVP_CipherInit; the others are here so that no re-keyed context can keep a stale one). */
#define FORGET_THEN_CALL(name, params, args)                                     \
    int name params {                                                            \
        static int (*real) params;                                               \
        if (!real) real = (int (*) params)dlsym(RTLD_NEXT, #name);               \
        forget(ctx);                                                             \
        return real args;                                                        \
    }

FORGET_THEN_CALL(EVP_CipherInit, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const unsigned char *k, const unsigned char *iv, int enc),
                 (ctx, c, k, iv, enc))
FORGET_THEN_CALL(EVP_CipherInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, ENGINE *e, const unsigned char *k, const unsigned char *iv, int enc),
                 (ctx, c, e, k, iv, enc))
FORGET_THEN_CALL(EVP_CipherInit_ex2, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const unsigned char *k, const unsigned char *iv, int enc, const OSSL_PARAM p[]),
                 (ctx, c, k, iv, enc, p))
FORGET_THEN_CALL(EVP_EncryptInit, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const unsigned char *k, const unsigned char *iv),
                 (ctx, c, k, iv))
FORGET_THEN_CALL(EVP_EncryptInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, ENGINE *e, const unsigned char *k, const unsigned char *iv),
                 (ctx, c, e, k, iv))
FORGET_THEN_CALL(EVP_EncryptInit_ex2, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const unsigned char *k, const unsigned char *iv, const OSSL_PARAM p[]),
                 (ctx, c, k, iv, p))
FORGET_THEN_CALL(EVP_DecryptInit, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const unsigned char *k, const unsigned char *iv),
                 (ctx, c, k, iv))
FORGET_THEN_CALL(EVP_DecryptInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, ENGINE *e, const unsigned char *k, const unsigned char *iv),
                 (ctx, c, e, k, iv))
FORGET_THEN_CALL(EVP_DecryptInit_ex2, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const unsigned char *k, const unsigned char *iv, const OSSL_PARAM p[]),
                 (ctx, c, k, iv, p))

int EVP_CIPHER_CTX_reset(EVP_CIPHER_CTX *ctx) {
    ensure_resolved();
    forget(ctx);
    return real_reset(ctx);
}

void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx) {
    ensure_resolved();
    if (ctx) forget(ctx);
    real_free(ctx);
}

unsigned long vz_keystream_refills(void) { return atomic_load(&refills); }

int vz_keystream_active(void) {
    /* The EVP_Cipher the process resolves by default is this one when the executable exports it. */
    void *global = dlsym(RTLD_DEFAULT, "EVP_Cipher");
    return global == (void *)EVP_Cipher;
}
