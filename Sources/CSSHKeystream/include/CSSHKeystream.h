#ifndef VZREPL_CSSHKEYSTREAM_H
#define VZREPL_CSSHKEYSTREAM_H

/* A keystream cache under libssh2 1.10's AES-CTR (VZTransportSSH is its only importer).
 *
 * libssh2 1.10 encrypts and decrypts a packet one cipher block at a time: one EVP_Cipher() call
 * per 16 bytes, each paying OpenSSL 3's provider dispatch, which costs more than the AES itself
 * (about half of the source's SSH-sending CPU). This library defines EVP_Cipher() (and the
 * context init/free calls libssh2 uses) in the executable, which the dynamic linker resolves
 * ahead of libcrypto's: for a counter-mode context it computes the keystream 64 KiB at a time
 * with libcrypto's own EVP_Cipher over zeros, and XORs each small call's input with the next
 * bytes of it. CTR's keystream does not depend on the data, so the output is byte for byte what
 * libcrypto would produce; every other cipher and mode goes straight to libcrypto. Nothing else
 * in the process calls EVP_Cipher on a CTR context. The vendored libssh2 1.11.1 (ThirdParty/libssh2)
 * encrypts a whole packet per call, which goes straight to libcrypto; it still decrypts block by
 * block, which the cache serves. */

#include <stddef.h>

/* Keystream refills (64 KiB each) since start, for tests and logs. */
unsigned long vz_keystream_refills(void);
/* 1 when this library's EVP_Cipher is the one libssh2 calls (the interposition took). */
int vz_keystream_active(void);

#endif
