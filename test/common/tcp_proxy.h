/* A loopback TCP proxy for tests: puts a controllable network fault (a
 * hang or a reset) between a client such as libpq and a real server. */
#ifndef EVSTORE_TEST_TCP_PROXY_H
#define EVSTORE_TEST_TCP_PROXY_H

typedef struct tcp_proxy tcp_proxy;

/* What the proxy does with the bytes and connections it carries. */
enum tcp_proxy_mode {
	/* Forward bytes both ways (the initial mode). */
	TCP_PROXY_PASS,
	/* A silently hung middlebox: nothing is forwarded or read on either
	 * side, every connection stays open (no FIN, no RST), and new
	 * connections are still accepted but not yet connected to the
	 * target. A client's writes are ACKed by the kernel until the
	 * buffers fill, then block. Back to PASS, forwarding resumes (and
	 * the new connections reach the target) with no byte lost. */
	TCP_PROXY_FREEZE,
	/* Reset (RST, via SO_LINGER 0) every open connection on both sides,
	 * then reset each new one as soon as it arrives, until the mode is
	 * set back to PASS. */
	TCP_PROXY_CUT
};

/* Start a proxy thread listening on 127.0.0.1, on an ephemeral port (see
 * tcp_proxy_port()), that forwards each accepted connection to target:
 * a Unix-domain socket path (any string containing a '/', such as
 * "/tmp/evstore-pg.X/.s.PGSQL.5433") or "host:port" ("127.0.0.1:5432",
 * "[::1]:5432"; the host must be numeric or resolve locally). target is
 * copied. The target is connected to lazily, once per accepted
 * connection: if it does not answer, that client is reset.
 * At most 64 connections at a time; more are reset on arrival.
 * Returns NULL on failure (bad target, no socket or thread); never prints. */
tcp_proxy *tcp_proxy_start(const char *target);

/* The port the proxy listens on, on 127.0.0.1. */
int tcp_proxy_port(const tcp_proxy *p);

/* Switch mode. Returns once the proxy thread has applied it: after
 * FREEZE no further byte is forwarded, after CUT every connection open
 * before the call has been reset. Safe from any thread, but not at the
 * same time as tcp_proxy_stop(). */
void tcp_proxy_set_mode(tcp_proxy *p, enum tcp_proxy_mode mode);

/* The number of connections accepted so far, in PASS or FREEZE mode,
 * whether or not the target then answered (those reset on arrival, in
 * CUT mode or beyond the limit, are not counted): lets a test check that
 * a client reconnected. Safe from any thread. */
unsigned int tcp_proxy_accepted(const tcp_proxy *p);

/* Stop the thread, close every socket (the connections it carried end)
 * and free p. NULL is fine. */
void tcp_proxy_stop(tcp_proxy *p);

#endif
