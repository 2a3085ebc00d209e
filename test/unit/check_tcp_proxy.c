/* Unit tests for the test-only TCP proxy (test/common/tcp_proxy.c), run
 * against small echo servers on a loopback TCP port and on a Unix socket,
 * so that the integration tests can trust it to fake network faults. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/tcp_proxy.h"
#include "unit/suites.h"

/* Bound on every wait for something that should happen: generous for a
 * loaded machine or valgrind, yet a hang still fails within Check's
 * timeout. */
#define WAIT_MS 2000
/* How long a frozen proxy must hold a reply back. */
#define FROZEN_MS 300
#define BIG (1024 * 1024)

/* ---- echo server: one thread, non-blocking, closes on EOF ---------- */

#define ECHO_CONNS 8
#define ECHO_BUF 16384

struct echo_conn {
	int fd;
	size_t off, len;
	char buf[ECHO_BUF];
};

struct echo {
	pthread_t thread;
	int lfd;
	int stop[2];
	int port;           /* TCP: the port on 127.0.0.1 */
	char dir[32];       /* Unix: mkdtemp() directory holding the socket */
	char path[64];
	struct echo_conn conns[ECHO_CONNS];
};

static void echo_close(struct echo_conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->off = c->len = 0;
}

/* Read only into an empty buffer and write it all back before reading
 * again: the echo applies backpressure like a real server. */
static void echo_step(struct echo_conn *c)
{
	ssize_t n;

	if (c->len == 0) {
		n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			echo_close(c);
			return;
		}
		if (n < 0)
			return;
		c->off = 0;
		c->len = (size_t)n;
	}
	n = send(c->fd, c->buf + c->off, c->len, MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		echo_close(c);
	} else if (n > 0) {
		c->off += (size_t)n;
		c->len -= (size_t)n;
	}
}

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	struct pollfd pfd[2 + ECHO_CONNS];
	int idx[ECHO_CONNS];
	int i, n;

	for (;;) {
		n = 0;
		pfd[n].fd = e->stop[0];
		pfd[n++].events = POLLIN;
		pfd[n].fd = e->lfd;
		pfd[n++].events = POLLIN;
		for (i = 0; i < ECHO_CONNS; i++) {
			idx[i] = -1;
			if (e->conns[i].fd < 0)
				continue;
			idx[i] = n;
			pfd[n].fd = e->conns[i].fd;
			pfd[n++].events = e->conns[i].len ? POLLOUT : POLLIN;
		}
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		if (pfd[0].revents)
			return NULL;
		for (i = 0; i < ECHO_CONNS; i++)
			if (idx[i] >= 0 && pfd[idx[i]].revents)
				echo_step(&e->conns[i]);
		if (pfd[1].revents) {
			int fd = accept(e->lfd, NULL, NULL);

			if (fd < 0)
				continue;
			for (i = 0; i < ECHO_CONNS && e->conns[i].fd >= 0; i++)
				;
			if (i == ECHO_CONNS) {
				close(fd);
				continue;
			}
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			e->conns[i].fd = fd;
		}
	}
}

/* A TCP echo server on 127.0.0.1, or with unix_socket a Unix one in a fresh
 * temporary directory. */
static struct echo *echo_start(int unix_socket)
{
	struct echo *e = calloc(1, sizeof(*e));
	int i;

	ck_assert_ptr_nonnull(e);
	for (i = 0; i < ECHO_CONNS; i++)
		e->conns[i].fd = -1;
	ck_assert_int_eq(pipe(e->stop), 0);
	if (unix_socket) {
		struct sockaddr_un sa_un;

		strcpy(e->dir, "/tmp/evs-proxy-XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(e->dir));
		snprintf(e->path, sizeof(e->path), "%s/echo.sock", e->dir);
		memset(&sa_un, 0, sizeof(sa_un));
		sa_un.sun_family = AF_UNIX;
		strcpy(sa_un.sun_path, e->path);
		e->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		ck_assert_int_ge(e->lfd, 0);
		ck_assert_int_eq(bind(e->lfd, (struct sockaddr *)&sa_un,
		                      sizeof(sa_un)), 0);
	} else {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		e->lfd = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(e->lfd, 0);
		ck_assert_int_eq(bind(e->lfd, (struct sockaddr *)&sin,
		                      sizeof(sin)), 0);
		ck_assert_int_eq(getsockname(e->lfd, (struct sockaddr *)&sin,
		                             &len), 0);
		e->port = ntohs(sin.sin_port);
	}
	ck_assert_int_eq(listen(e->lfd, 16), 0);
	ck_assert_int_eq(pthread_create(&e->thread, NULL, echo_main, e), 0);
	return e;
}

static void echo_stop(struct echo *e)
{
	int i;

	if (!e)
		return;
	if (write(e->stop[1], "", 1) != 1)
		return; /* the thread would not stop: leak rather than hang */
	pthread_join(e->thread, NULL);
	for (i = 0; i < ECHO_CONNS; i++)
		if (e->conns[i].fd >= 0)
			close(e->conns[i].fd);
	close(e->lfd);
	close(e->stop[0]);
	close(e->stop[1]);
	if (e->path[0]) {
		unlink(e->path);
		rmdir(e->dir);
	}
	free(e);
}

/* ---- fixture: both echo servers; the test's proxy and clients ------- */

#define MAX_CLIENTS 8

static struct echo *tcp_echo, *unix_echo;
static tcp_proxy *proxy;
static int clients[MAX_CLIENTS];
static int n_clients;

static void setup(void)
{
	tcp_echo = echo_start(0);
	unix_echo = echo_start(1);
	proxy = NULL;
	n_clients = 0;
}

static void teardown(void)
{
	int i;

	for (i = 0; i < n_clients; i++)
		if (clients[i] >= 0)
			close(clients[i]);
	n_clients = 0;
	tcp_proxy_stop(proxy);
	proxy = NULL;
	echo_stop(tcp_echo);
	echo_stop(unix_echo);
	tcp_echo = unix_echo = NULL;
}

static tcp_proxy *proxy_to_tcp_echo(void)
{
	char target[32];

	snprintf(target, sizeof(target), "127.0.0.1:%d", tcp_echo->port);
	proxy = tcp_proxy_start(target);
	ck_assert_ptr_nonnull(proxy);
	ck_assert_int_gt(tcp_proxy_port(proxy), 0);
	return proxy;
}

/* A non-blocking client socket, connected (or refused: -1). sndbuf > 0
 * sets SO_SNDBUF first. Closed by the teardown. */
static int client_connect_buf(int port, int sndbuf)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_lt(n_clients, MAX_CLIENTS);
	clients[n_clients++] = fd;
	if (sndbuf > 0)
		ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
		                            sizeof(sndbuf)), 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((unsigned short)port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		/* A signal (valgrind's, say) cut the wait short: the
		 * handshake goes on; wait for its outcome. */
		struct pollfd pfd = {fd, POLLOUT, 0};
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (errno != EINTR || poll(&pfd, 1, 5000) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ||
		    soerr != 0)
			return -1;
	}
	ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK),
	                 0);
	return fd;
}

static int client_connect(int port)
{
	int fd = client_connect_buf(port, 0);

	ck_assert_msg(fd >= 0, "connect to port %d: %s", port,
	              strerror(errno));
	return fd;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* poll() one fd for events until ms have passed: its revents, or 0. */
static short wait_for(int fd, short events, int ms)
{
	struct pollfd pfd = { fd, events, 0 };
	long end = now_ms() + ms;
	long left;

	while ((left = end - now_ms()) >= 0) {
		int rc = poll(&pfd, 1, (int)left);

		if (rc > 0)
			return pfd.revents;
		if (rc == 0)
			return 0;
		ck_assert_int_eq(errno, EINTR);
	}
	return 0;
}

static void send_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w;

		ck_assert_msg(wait_for(fd, POLLOUT, WAIT_MS) & POLLOUT,
		              "cannot write: %zu bytes left", n);
		w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		ck_assert_int_gt(w, 0);
		buf += w;
		n -= (size_t)w;
	}
}

/* Exactly n bytes, each wait bounded by WAIT_MS. */
static void recv_all(int fd, char *buf, size_t n)
{
	while (n > 0) {
		ssize_t r;

		ck_assert_msg(wait_for(fd, POLLIN, WAIT_MS),
		              "no reply: %zu bytes missing", n);
		r = recv(fd, buf, n, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		ck_assert_msg(r > 0, "connection ended: %zu bytes missing (%s)",
		              n, r < 0 ? strerror(errno) : "EOF");
		buf += r;
		n -= (size_t)r;
	}
}

static void roundtrip(int fd, const char *msg)
{
	char got[64];
	size_t n = strlen(msg);

	ck_assert_uint_lt(n, sizeof(got));
	send_all(fd, msg, n);
	recv_all(fd, got, n);
	got[n] = '\0';
	ck_assert_str_eq(got, msg);
}

/* The connection ends within WAIT_MS, by reset or (at worst) EOF. */
static void expect_ended(int fd)
{
	char c;
	ssize_t r;

	ck_assert_msg(wait_for(fd, POLLIN, WAIT_MS), "connection still open");
	r = recv(fd, &c, 1, 0);
	ck_assert_msg(r == 0 || (r < 0 && errno == ECONNRESET),
	              "expected reset or EOF, got %zd (%s)", r,
	              r < 0 ? strerror(errno) : "a byte");
}

static void fill_pattern(char *buf, size_t n, unsigned int seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (char)((i * 131 + seed + i / 4093) & 0xff);
}

/* ---- tests ---------------------------------------------------------- */

START_TEST(pass_echoes_over_tcp)
{
	int a, b;

	proxy_to_tcp_echo();
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 0);
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "hello");
	roundtrip(a, "again");
	b = client_connect(tcp_proxy_port(proxy));
	roundtrip(b, "second");
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 2);
}
END_TEST

START_TEST(pass_echoes_over_unix)
{
	int a;

	proxy = tcp_proxy_start(unix_echo->path);
	ck_assert_ptr_nonnull(proxy);
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "over a unix socket");
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 1);
}
END_TEST

/* 16 times the proxy's buffer each way, sent and read at once: the echo
 * and the proxy must hold back a writer rather than drop or reorder. */
static void carries_a_mebibyte(void)
{
	char *out = malloc(BIG), *in = malloc(BIG);
	size_t sent = 0, got = 0;
	long end = now_ms() + 4 * WAIT_MS;
	int fd;

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(in);
	fill_pattern(out, BIG, 7);
	fd = client_connect(tcp_proxy_port(proxy));
	while (got < BIG) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t n;

		if (sent < BIG)
			pfd.events |= POLLOUT;
		ck_assert_msg(now_ms() < end, "stalled: sent %zu, got %zu",
		              sent, got);
		if (poll(&pfd, 1, WAIT_MS) <= 0)
			continue;
		if (pfd.revents & POLLOUT) {
			n = send(fd, out + sent, BIG - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		n = recv(fd, in + got, BIG - got, 0);
		if (n > 0)
			got += (size_t)n;
		else
			ck_assert_msg(n < 0 && (errno == EAGAIN ||
			                        errno == EINTR),
			              "connection ended after %zu bytes", got);
	}
	ck_assert_msg(memcmp(in, out, BIG) == 0, "echoed bytes differ");
	free(in);
	free(out);
}

START_TEST(pass_carries_a_mebibyte_over_tcp)
{
	proxy_to_tcp_echo();
	carries_a_mebibyte();
}
END_TEST

START_TEST(pass_carries_a_mebibyte_over_unix)
{
	proxy = tcp_proxy_start(unix_echo->path);
	ck_assert_ptr_nonnull(proxy);
	carries_a_mebibyte();
}
END_TEST

/* The client's FIN reaches the echo, which closes: its FIN comes back
 * after the data. */
START_TEST(half_close_is_forwarded)
{
	char got[4];
	int a;

	proxy_to_tcp_echo();
	a = client_connect(tcp_proxy_port(proxy));
	send_all(a, "bye", 3);
	ck_assert_int_eq(shutdown(a, SHUT_WR), 0);
	recv_all(a, got, 3);
	ck_assert_int_eq(memcmp(got, "bye", 3), 0);
	ck_assert_msg(wait_for(a, POLLIN, WAIT_MS), "no EOF");
	ck_assert_int_eq(recv(a, got, 1, 0), 0);
}
END_TEST

START_TEST(freeze_holds_replies_then_resumes)
{
	struct pollfd pfd[2];
	char got[5];
	int a, b, rc;

	proxy_to_tcp_echo();
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "warm");
	tcp_proxy_set_mode(proxy, TCP_PROXY_FREEZE);
	send_all(a, "ping", 4);
	/* A connection made while frozen is accepted, but not carried. */
	b = client_connect(tcp_proxy_port(proxy));
	send_all(b, "pong", 4);

	/* Nothing comes back, not even EOF or a reset. */
	pfd[0].fd = a;
	pfd[1].fd = b;
	pfd[0].events = pfd[1].events = POLLIN;
	do
		rc = poll(pfd, 2, FROZEN_MS);
	while (rc < 0 && errno == EINTR);
	ck_assert_msg(rc == 0, "frozen proxy let something through "
	              "(revents %#x, %#x)", (unsigned)pfd[0].revents,
	              (unsigned)pfd[1].revents);

	tcp_proxy_set_mode(proxy, TCP_PROXY_PASS);
	recv_all(a, got, 4);
	got[4] = '\0';
	ck_assert_str_eq(got, "ping");
	recv_all(b, got, 4);
	got[4] = '\0';
	ck_assert_str_eq(got, "pong");
	roundtrip(a, "still open");
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 2);
}
END_TEST

/* A writer to a frozen proxy fills the buffers and then blocks; none of
 * what it wrote is lost when the proxy resumes. */
START_TEST(freeze_blocks_a_writer_without_losing_bytes)
{
	/* Far more than a frozen hop holds (about 170 KiB here), even with
	 * tuned socket buffers; a 1 MiB pattern repeats up to it. */
	const size_t cap = 64u * BIG;
	char *out = malloc(BIG), *in;
	size_t sent = 0, i;
	int a;

	ck_assert_ptr_nonnull(out);
	fill_pattern(out, BIG, 3);
	proxy_to_tcp_echo();
	a = client_connect_buf(tcp_proxy_port(proxy), 16 * 1024);
	ck_assert_int_ge(a, 0);
	roundtrip(a, "warm");
	tcp_proxy_set_mode(proxy, TCP_PROXY_FREEZE);
	/* Until a send() has nowhere to go for a while: the kernel may
	 * still be ACKing what is in flight when the first EAGAIN comes. */
	while (sent < cap) {
		size_t at = sent % BIG;
		ssize_t n = send(a, out + at, BIG - at, MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		ck_assert_msg(errno == EAGAIN || errno == EINTR,
		              "send: %s", strerror(errno));
		if (!(wait_for(a, POLLOUT, 100) & POLLOUT))
			break;
	}
	ck_assert_msg(sent < cap, "a frozen proxy took %zu bytes", sent);
	ck_assert_msg(!wait_for(a, POLLIN, 0), "a reply came back");

	tcp_proxy_set_mode(proxy, TCP_PROXY_PASS);
	in = malloc(sent);
	ck_assert_ptr_nonnull(in);
	recv_all(a, in, sent);
	for (i = 0; i < sent; i += BIG) {
		size_t n = sent - i < BIG ? sent - i : BIG;

		ck_assert_msg(memcmp(in + i, out, n) == 0,
		              "echoed bytes differ after offset %zu", i);
	}
	free(in);
	free(out);
}
END_TEST

START_TEST(cut_resets_open_and_new_connections)
{
	int a, b, c;

	proxy_to_tcp_echo();
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "before");
	tcp_proxy_set_mode(proxy, TCP_PROXY_CUT);
	expect_ended(a);

	b = client_connect_buf(tcp_proxy_port(proxy), 0);
	if (b >= 0)
		expect_ended(b);
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 1);

	tcp_proxy_set_mode(proxy, TCP_PROXY_PASS);
	c = client_connect(tcp_proxy_port(proxy));
	roundtrip(c, "after");
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 2);
}
END_TEST

/* CUT then PASS at once still resets what was open. */
START_TEST(cut_is_not_lost_in_a_quick_pass)
{
	int a;

	proxy_to_tcp_echo();
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "before");
	tcp_proxy_set_mode(proxy, TCP_PROXY_CUT);
	tcp_proxy_set_mode(proxy, TCP_PROXY_PASS);
	expect_ended(a);
}
END_TEST

START_TEST(cut_resets_frozen_connections)
{
	int a, b;

	proxy_to_tcp_echo();
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "before");
	tcp_proxy_set_mode(proxy, TCP_PROXY_FREEZE);
	send_all(a, "held", 4);
	b = client_connect(tcp_proxy_port(proxy));
	tcp_proxy_set_mode(proxy, TCP_PROXY_CUT);
	expect_ended(a);
	expect_ended(b);
}
END_TEST

START_TEST(unreachable_target_resets_the_client)
{
	char path[96];
	int a;

	snprintf(path, sizeof(path), "%s/no-such.sock", unix_echo->dir);
	proxy = tcp_proxy_start(path);
	ck_assert_ptr_nonnull(proxy);
	a = client_connect(tcp_proxy_port(proxy));
	expect_ended(a);
	ck_assert_uint_eq(tcp_proxy_accepted(proxy), 1);
}
END_TEST

START_TEST(start_refuses_bad_targets)
{
	char longpath[200];

	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	ck_assert_ptr_null(tcp_proxy_start(NULL));
	ck_assert_ptr_null(tcp_proxy_start(""));
	ck_assert_ptr_null(tcp_proxy_start("5432"));
	ck_assert_ptr_null(tcp_proxy_start("127.0.0.1:"));
	ck_assert_ptr_null(tcp_proxy_start(":5432"));
	ck_assert_ptr_null(tcp_proxy_start("127.0.0.1:port"));
	ck_assert_ptr_null(tcp_proxy_start("[]:5432"));
	ck_assert_ptr_null(tcp_proxy_start(longpath));
	tcp_proxy_stop(NULL);
}
END_TEST

START_TEST(start_then_stop_with_connections_open)
{
	int a;

	proxy = tcp_proxy_start("[::1]:9");
	ck_assert_ptr_nonnull(proxy);
	tcp_proxy_stop(proxy);
	proxy_to_tcp_echo();
	a = client_connect(tcp_proxy_port(proxy));
	roundtrip(a, "open");
	tcp_proxy_set_mode(proxy, TCP_PROXY_FREEZE);
	client_connect(tcp_proxy_port(proxy));
	tcp_proxy_stop(proxy); /* valgrind and LSan check all is freed */
	proxy = NULL;
	expect_ended(a);
}
END_TEST

Suite *tcp_proxy_suite(void)
{
	Suite *s = suite_create("tcp_proxy");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, pass_echoes_over_tcp);
	tcase_add_test(tc, pass_echoes_over_unix);
	tcase_add_test(tc, pass_carries_a_mebibyte_over_tcp);
	tcase_add_test(tc, pass_carries_a_mebibyte_over_unix);
	tcase_add_test(tc, half_close_is_forwarded);
	tcase_add_test(tc, freeze_holds_replies_then_resumes);
	tcase_add_test(tc, freeze_blocks_a_writer_without_losing_bytes);
	tcase_add_test(tc, cut_resets_open_and_new_connections);
	tcase_add_test(tc, cut_is_not_lost_in_a_quick_pass);
	tcase_add_test(tc, cut_resets_frozen_connections);
	tcase_add_test(tc, unreachable_target_resets_the_client);
	tcase_add_test(tc, start_refuses_bad_targets);
	tcase_add_test(tc, start_then_stop_with_connections_open);
	suite_add_tcase(s, tc);
	return s;
}
