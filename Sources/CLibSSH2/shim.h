#ifndef VZREPL_CLIBSSH2_SHIM_H
#define VZREPL_CLIBSSH2_SHIM_H

/* libssh2 for VZTransportSSH (the only importer of this module).
 *
 * libssh2 spells most of its convenience calls and several constants as function-like or
 * expression macros, which Swift cannot import. These static inline wrappers give them names
 * Swift can call; each says which libssh2 function or macro it stands for. Nothing here keeps
 * state. */

#include <libssh2.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- session ---------------------------------------------------------------------------- */

/* libssh2_session_init() with an `abstract` pointer: the RECV callback receives it, which is how
 * the KEXINIT tap finds its buffer without a global. */
static inline LIBSSH2_SESSION *vz_ssh2_session_init(void *abstract) {
    return libssh2_session_init_ex(NULL, NULL, NULL, abstract);
}

/* The signature libssh2 calls for LIBSSH2_CALLBACK_RECV (LIBSSH2_RECV_FUNC). */
typedef ssize_t (*vz_ssh2_recv_fn)(libssh2_socket_t socket, void *buffer, size_t length, int flags,
                                   void **abstract);

/* libssh2_session_callback_set(session, LIBSSH2_CALLBACK_RECV, fn); returns the previous one. */
static inline vz_ssh2_recv_fn vz_ssh2_set_recv(LIBSSH2_SESSION *session, vz_ssh2_recv_fn fn) {
    return (vz_ssh2_recv_fn)libssh2_session_callback_set(session, LIBSSH2_CALLBACK_RECV, (void *)fn);
}

/* What the session's socket callbacks share, reached through its `abstract` pointer. */
typedef struct {
    void *tap;          /* the KexInitTap (Swift object), for the RECV callback */
    int timeout_ms;     /* the longest a send may wait for room in the socket */
    int cancel_fd;      /* readable once the session is being closed: stop waiting */
    int failure;        /* errno of the last failed send (ETIMEDOUT, ECANCELED, ...), else 0 */
} vz_ssh2_io;

/* A LIBSSH2_SEND_FUNC that never returns a partial send or EAGAIN: it waits (poll, up to
 * timeout_ms without progress, or until cancel_fd is readable) until the whole buffer is in the
 * socket, or fails. libssh2 1.10 then never holds a half-sent packet, which is what its key
 * re-exchange mishandles: send_existing() "resumes nonetheless" a pending packet on behalf of a
 * different one (upstream #1397/#1431/#1454, #2110), silently dropping or repeating a packet. The
 * session stays non-blocking for reads. */
static inline ssize_t vz_ssh2_send_whole(libssh2_socket_t fd, const void *buffer, size_t length,
                                         int flags, void **abstract) {
    vz_ssh2_io *io = abstract ? (vz_ssh2_io *)*abstract : NULL;
    size_t done = 0;
    while (done < length) {
        ssize_t n = send(fd, (const char *)buffer + done, length - done, flags | MSG_NOSIGNAL);
        if (n > 0) { done += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p[2] = { { fd, POLLOUT, 0 }, { io ? io->cancel_fd : -1, POLLIN, 0 } };
            int r = poll(p, 2, io ? io->timeout_ms : -1);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) { if (io) io->failure = errno; return -errno; }
            if (r == 0) { if (io) io->failure = ETIMEDOUT; return -ETIMEDOUT; }
            if (p[1].revents) { if (io) io->failure = ECANCELED; return -ECANCELED; }
            continue;
        }
        int e = n == 0 ? EPIPE : errno;
        if (io) io->failure = e;
        return -e;
    }
    return (ssize_t)length;
}

/* The signature libssh2 calls for LIBSSH2_CALLBACK_SEND (LIBSSH2_SEND_FUNC). */
typedef ssize_t (*vz_ssh2_send_fn)(libssh2_socket_t socket, const void *buffer, size_t length, int flags,
                                   void **abstract);

/* Installs vz_ssh2_send_whole as the session's SEND callback. */
static inline void vz_ssh2_use_whole_sends(LIBSSH2_SESSION *session) {
    vz_ssh2_send_fn fn = vz_ssh2_send_whole;
    libssh2_session_callback_set(session, LIBSSH2_CALLBACK_SEND, (void *)fn);
}

/* libssh2_session_disconnect(session, description) */
static inline int vz_ssh2_session_disconnect(LIBSSH2_SESSION *session, const char *description) {
    return libssh2_session_disconnect_ex(session, SSH_DISCONNECT_BY_APPLICATION, description, "");
}

/* libssh2_userauth_publickey_fromfile(session, user, pub, priv, passphrase); `pub` may be NULL
 * (the OpenSSL backend derives the public key from the private one). */
static inline int vz_ssh2_userauth_publickey_fromfile(LIBSSH2_SESSION *session, const char *user,
                                                      const char *publicKey, const char *privateKey,
                                                      const char *passphrase) {
    return libssh2_userauth_publickey_fromfile_ex(session, user, (unsigned int)strlen(user), publicKey,
                                                  privateKey, passphrase);
}

/* ---- channel ---------------------------------------------------------------------------- */

/* libssh2_channel_open_session(session) */
static inline LIBSSH2_CHANNEL *vz_ssh2_channel_open_session(LIBSSH2_SESSION *session) {
    return libssh2_channel_open_ex(session, "session", sizeof("session") - 1, LIBSSH2_CHANNEL_WINDOW_DEFAULT,
                                   LIBSSH2_CHANNEL_PACKET_DEFAULT, NULL, 0);
}

/* libssh2_channel_exec(channel, command) */
static inline int vz_ssh2_channel_exec(LIBSSH2_CHANNEL *channel, const char *command) {
    return libssh2_channel_process_startup(channel, "exec", sizeof("exec") - 1, command,
                                           (unsigned int)strlen(command));
}

/* libssh2_channel_read(channel, buf, len): stdout of the remote command. */
static inline ssize_t vz_ssh2_channel_read(LIBSSH2_CHANNEL *channel, void *buf, size_t len) {
    return libssh2_channel_read_ex(channel, 0, (char *)buf, len);
}

/* libssh2_channel_read_stderr(channel, buf, len) */
static inline ssize_t vz_ssh2_channel_read_stderr(LIBSSH2_CHANNEL *channel, void *buf, size_t len) {
    return libssh2_channel_read_ex(channel, SSH_EXTENDED_DATA_STDERR, (char *)buf, len);
}

/* libssh2_channel_write(channel, buf, len): at most ~32 KiB are taken per call. */
static inline ssize_t vz_ssh2_channel_write(LIBSSH2_CHANNEL *channel, const void *buf, size_t len) {
    return libssh2_channel_write_ex(channel, 0, (const char *)buf, len);
}

/* libssh2_channel_window_write(channel): bytes the server lets us send right now. */
static inline unsigned long vz_ssh2_channel_window_write(LIBSSH2_CHANNEL *channel) {
    return libssh2_channel_window_write_ex(channel, NULL);
}

/* ---- constants that are expression macros --------------------------------------------- */

static inline int vz_ssh2_error_eagain(void) { return LIBSSH2_ERROR_EAGAIN; }
static inline int vz_ssh2_block_inbound(void) { return LIBSSH2_SESSION_BLOCK_INBOUND; }
static inline int vz_ssh2_block_outbound(void) { return LIBSSH2_SESSION_BLOCK_OUTBOUND; }

/* LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW for libssh2_knownhost_checkp. */
static inline int vz_ssh2_knownhost_check_flags(void) {
    return LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW;
}

/* Maps a LIBSSH2_HOSTKEY_TYPE_* (what libssh2_session_hostkey reports) to the
 * LIBSSH2_KNOWNHOST_KEY_* bit libssh2_knownhost_checkp wants; 0 if there is none. */
static inline int vz_ssh2_knownhost_key_bits(int hostkeyType) {
    switch (hostkeyType) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
#ifdef LIBSSH2_HOSTKEY_TYPE_ECDSA_256
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
#endif
#ifdef LIBSSH2_HOSTKEY_TYPE_ED25519
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
#endif
    default: return 0;
    }
}

#endif
