/* A loopback TCP proxy for tests (see tcp_proxy.h): one thread, one poll()
 * loop over the listening socket, a self-pipe and the connection pairs. */
#include "common/tcp_proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PAIRS 64
#define BUF_SIZE (64 * 1024)
/* Rounds of read-then-write per direction per wake-up: enough to drain a
 * socket quickly, few enough that one busy pair cannot starve the rest. */
#define PUMP_ROUNDS 8

enum pair_state {
	PAIR_PENDING,    /* accepted while frozen: target not yet connected */
	PAIR_CONNECTING, /* non-blocking connect to the target under way */
	PAIR_OPEN
};

/* One client connection and its target connection. Direction d carries
 * bytes read from fd[d] to fd[!d]: 0 is client to target, 1 the reply. */
struct pair {
	int fd[2];
	enum pair_state state;
	size_t off[2], len[2]; /* buf[d][off, off + len) is still to write */
	int eof[2];            /* fd[d] sent its FIN */
	int shut[2];           /* ... and it was passed on to fd[!d] */
	char buf[2][BUF_SIZE];
};

union target_addr {
	struct sockaddr sa;
	struct sockaddr_un un;
	struct sockaddr_storage ss;
};

struct tcp_proxy {
	pthread_t thread;
	int lfd;
	int wake[2]; /* self-pipe: a byte means "look at the requests" */
	int port;
	union target_addr taddr;
	socklen_t taddrlen;
	atomic_uint accepted;

	/* Requests from other threads, under lock. set_mode() waits until
	 * ack reaches its req, so the mode is in force when it returns.
	 * cuts counts CUT requests, so that CUT then PASS in quick
	 * succession still resets the connections. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum tcp_proxy_mode want;
	unsigned long req, ack, cuts;
	int stop;

	/* Owned by the proxy thread alone. */
	enum tcp_proxy_mode mode;
	unsigned long cuts_seen;
	int backoff; /* accept() failed for want of resources */
	struct pair *pairs[MAX_PAIRS];
};

static int set_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -1;
	return 0;
}

/* Without it, a small message split in two by a partial read can wait
 * for a delayed ACK (Nagle), adding 40 ms to a round trip. */
static void set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Close so that the peer sees ECONNRESET rather than a clean EOF. */
static void close_reset(int fd)
{
	struct linger lg = { 1, 0 };

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void pair_free(tcp_proxy *p, int i, int reset)
{
	struct pair *pr = p->pairs[i];
	int d;

	for (d = 0; d < 2; d++) {
		if (reset)
			close_reset(pr->fd[d]);
		else if (pr->fd[d] >= 0)
			close(pr->fd[d]);
	}
	free(pr);
	p->pairs[i] = NULL;
}

static int target_connect(tcp_proxy *p, struct pair *pr)
{
	int fd = socket(p->taddr.sa.sa_family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (set_nonblock_cloexec(fd) < 0)
		goto fail;
	if (p->taddr.sa.sa_family != AF_UNIX)
		set_nodelay(fd);
	if (connect(fd, &p->taddr.sa, p->taddrlen) == 0) {
		pr->state = PAIR_OPEN;
	} else if (errno == EINPROGRESS || errno == EINTR) {
		/* An interrupted non-blocking connect goes on regardless. */
		pr->state = PAIR_CONNECTING;
	} else {
		/* Also EAGAIN: a Unix socket's backlog is full. */
		goto fail;
	}
	pr->fd[1] = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

static int connect_done(struct pair *pr)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(pr->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
	    err != 0)
		return -1;
	pr->state = PAIR_OPEN;
	return 0;
}

static int would_block(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK;
}

/* Move what can be moved from fd[d] to fd[!d] without blocking, and pass a
 * FIN on once everything before it is written. Returns -1 when a socket
 * failed (reset, or written after its peer closed): the pair must go. */
static int pump(struct pair *pr, int d)
{
	int from = pr->fd[d], to = pr->fd[!d];
	char *buf = pr->buf[d];
	int round;
	ssize_t n;

	for (round = 0; round < PUMP_ROUNDS; round++) {
		int moved = 0;

		if (!pr->eof[d] && pr->len[d] < BUF_SIZE) {
			if (pr->off[d] + pr->len[d] == BUF_SIZE) {
				memmove(buf, buf + pr->off[d], pr->len[d]);
				pr->off[d] = 0;
			}
			n = recv(from, buf + pr->off[d] + pr->len[d],
			         BUF_SIZE - pr->off[d] - pr->len[d], 0);
			if (n > 0) {
				pr->len[d] += (size_t)n;
				moved = 1;
			} else if (n == 0) {
				pr->eof[d] = 1;
			} else if (errno == EINTR) {
				moved = 1;
			} else if (!would_block(errno)) {
				return -1;
			}
		}
		if (pr->len[d] > 0) {
			/* MSG_NOSIGNAL: a closed peer must not kill the
			 * test process with SIGPIPE. */
			n = send(to, buf + pr->off[d], pr->len[d],
			         MSG_NOSIGNAL);
			if (n > 0) {
				pr->off[d] += (size_t)n;
				pr->len[d] -= (size_t)n;
				if (pr->len[d] == 0)
					pr->off[d] = 0;
				moved = 1;
			} else if (n < 0 && errno == EINTR) {
				moved = 1;
			} else if (n < 0 && !would_block(errno)) {
				return -1;
			}
		}
		if (!moved)
			break;
	}
	if (pr->eof[d] && pr->len[d] == 0 && !pr->shut[d]) {
		if (shutdown(to, SHUT_WR) < 0)
			return -1;
		pr->shut[d] = 1;
	}
	return 0;
}

/* The poll() events fd[d] of an open pair needs; 0 leaves it out, so that
 * a socket with nothing to do cannot spin the loop with POLLHUP. */
static short pair_events(const struct pair *pr, int d)
{
	short ev = 0;

	if (pr->state == PAIR_CONNECTING)
		return d == 1 ? POLLOUT : 0;
	if (!pr->eof[d] && pr->len[d] < BUF_SIZE)
		ev |= POLLIN;
	if (pr->len[!d] > 0)
		ev |= POLLOUT;
	return ev;
}

/* One pair after poll() reported on one of its sockets. */
static void pair_step(tcp_proxy *p, int i)
{
	struct pair *pr = p->pairs[i];

	if (pr->state == PAIR_CONNECTING && connect_done(pr) < 0) {
		pair_free(p, i, 1);
		return;
	}
	if (pump(pr, 0) < 0 || pump(pr, 1) < 0) {
		/* Pass the failure on as a reset, as a router would. */
		pair_free(p, i, 1);
		return;
	}
	if (pr->shut[0] && pr->shut[1])
		pair_free(p, i, 0);
}

static void do_accept(tcp_proxy *p)
{
	int tries;

	/* Bounded, so that a flood of connections cannot starve the pairs. */
	for (tries = 0; tries < MAX_PAIRS; tries++) {
		struct pair *pr;
		int fd = accept(p->lfd, NULL, NULL);
		int i;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (!would_block(errno))
				p->backoff = 1; /* EMFILE and the like */
			return;
		}
		for (i = 0; i < MAX_PAIRS && p->pairs[i]; i++)
			;
		if (p->mode == TCP_PROXY_CUT || i == MAX_PAIRS ||
		    set_nonblock_cloexec(fd) < 0 ||
		    !(pr = calloc(1, sizeof(*pr)))) {
			close_reset(fd);
			continue;
		}
		set_nodelay(fd);
		pr->fd[0] = fd;
		pr->fd[1] = -1;
		pr->state = PAIR_PENDING;
		atomic_fetch_add(&p->accepted, 1);
		/* While frozen, the target is not contacted: a hung network
		 * would not let the connection through either. */
		if (p->mode == TCP_PROXY_PASS && target_connect(p, pr) < 0) {
			close_reset(fd);
			free(pr);
			continue;
		}
		p->pairs[i] = pr;
	}
}

/* Apply what other threads asked for, then acknowledge it. Returns 1 when
 * asked to stop. */
static int apply_requests(tcp_proxy *p)
{
	enum tcp_proxy_mode want;
	unsigned long req, cuts;
	int i, stop;
	char drain[64];

	while (read(p->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&p->lock);
	want = p->want;
	req = p->req;
	cuts = p->cuts;
	stop = p->stop;
	pthread_mutex_unlock(&p->lock);
	if (stop)
		return 1;
	if (cuts != p->cuts_seen) {
		for (i = 0; i < MAX_PAIRS; i++)
			if (p->pairs[i])
				pair_free(p, i, 1);
		p->cuts_seen = cuts;
	}
	p->mode = want;
	if (want == TCP_PROXY_PASS) {
		for (i = 0; i < MAX_PAIRS; i++)
			if (p->pairs[i] && p->pairs[i]->state == PAIR_PENDING &&
			    target_connect(p, p->pairs[i]) < 0)
				pair_free(p, i, 1);
	}
	pthread_mutex_lock(&p->lock);
	p->ack = req;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void *proxy_main(void *arg)
{
	tcp_proxy *p = arg;
	struct pollfd pfd[2 + 2 * MAX_PAIRS];
	int idx[MAX_PAIRS][2];
	int i, d, n, lidx;

	if (apply_requests(p))
		return NULL;
	for (;;) {
		n = 0;
		pfd[n].fd = p->wake[0];
		pfd[n++].events = POLLIN;
		lidx = -1;
		if (!p->backoff) {
			lidx = n;
			pfd[n].fd = p->lfd;
			pfd[n++].events = POLLIN;
		}
		for (i = 0; i < MAX_PAIRS; i++) {
			idx[i][0] = idx[i][1] = -1;
			/* Frozen pairs are not polled at all: nothing on
			 * them may be read, written or noticed. */
			if (!p->pairs[i] || p->mode != TCP_PROXY_PASS)
				continue;
			for (d = 0; d < 2; d++) {
				short ev = pair_events(p->pairs[i], d);

				if (ev == 0)
					continue;
				idx[i][d] = n;
				pfd[n].fd = p->pairs[i]->fd[d];
				pfd[n++].events = ev;
			}
		}
		/* After a failed accept(), retry the listener in 50 ms. */
		if (poll(pfd, (nfds_t)n, p->backoff ? 50 : -1) < 0)
			continue; /* EINTR; nothing else is expected */
		p->backoff = 0;
		if (pfd[0].revents) {
			/* The mode may have changed: apply it before any
			 * I/O, then poll again. */
			if (apply_requests(p))
				return NULL;
			continue;
		}
		for (i = 0; i < MAX_PAIRS; i++) {
			if ((idx[i][0] >= 0 && pfd[idx[i][0]].revents) ||
			    (idx[i][1] >= 0 && pfd[idx[i][1]].revents))
				pair_step(p, i);
		}
		if (lidx >= 0 && pfd[lidx].revents)
			do_accept(p);
	}
}

static int parse_target(tcp_proxy *p, const char *target)
{
	struct addrinfo hints, *res = NULL;
	const char *colon;
	char host[256];
	size_t hlen;

	if (strchr(target, '/')) {
		if (strlen(target) >= sizeof(p->taddr.un.sun_path))
			return -1;
		p->taddr.un.sun_family = AF_UNIX;
		strcpy(p->taddr.un.sun_path, target);
		p->taddrlen = sizeof(p->taddr.un);
		return 0;
	}
	colon = strrchr(target, ':');
	if (!colon || colon == target || colon[1] == '\0')
		return -1;
	hlen = (size_t)(colon - target);
	if (target[0] == '[' && colon[-1] == ']') {
		target++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, target, hlen);
	host[hlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
		return -1;
	if (res->ai_addrlen > sizeof(p->taddr)) {
		freeaddrinfo(res);
		return -1;
	}
	memcpy(&p->taddr, res->ai_addr, res->ai_addrlen);
	p->taddrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int listen_loopback(tcp_proxy *p)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (p->lfd < 0 || set_nonblock_cloexec(p->lfd) < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = 0;
	if (bind(p->lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(p->lfd, MAX_PAIRS) < 0 ||
	    getsockname(p->lfd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	p->port = ntohs(sin.sin_port);
	return 0;
}

tcp_proxy *tcp_proxy_start(const char *target)
{
	tcp_proxy *p;
	int sync_made = 0;

	if (!target)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->lfd = p->wake[0] = p->wake[1] = -1;
	atomic_init(&p->accepted, 0);
	p->want = p->mode = TCP_PROXY_PASS;
	if (parse_target(p, target) < 0 || listen_loopback(p) < 0 ||
	    pipe(p->wake) < 0)
		goto fail;
	if (set_nonblock_cloexec(p->wake[0]) < 0 ||
	    set_nonblock_cloexec(p->wake[1]) < 0)
		goto fail;
	if (pthread_mutex_init(&p->lock, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&p->cond, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		goto fail;
	}
	sync_made = 1;
	if (pthread_create(&p->thread, NULL, proxy_main, p) != 0)
		goto fail;
	return p;
fail:
	if (sync_made) {
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
	}
	if (p->lfd >= 0)
		close(p->lfd);
	if (p->wake[0] >= 0)
		close(p->wake[0]);
	if (p->wake[1] >= 0)
		close(p->wake[1]);
	free(p);
	return NULL;
}

int tcp_proxy_port(const tcp_proxy *p)
{
	return p->port;
}

unsigned int tcp_proxy_accepted(const tcp_proxy *p)
{
	return atomic_load(&p->accepted);
}

/* Called with the lock held. */
static void wake_thread(tcp_proxy *p)
{
	/* A full pipe already holds a pending wake-up: nothing is lost. */
	if (write(p->wake[1], "", 1) < 0)
		return;
}

void tcp_proxy_set_mode(tcp_proxy *p, enum tcp_proxy_mode mode)
{
	unsigned long mine;

	pthread_mutex_lock(&p->lock);
	p->want = mode;
	if (mode == TCP_PROXY_CUT)
		p->cuts++;
	mine = ++p->req;
	wake_thread(p);
	while (p->ack < mine)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void tcp_proxy_stop(tcp_proxy *p)
{
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	wake_thread(p);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	for (i = 0; i < MAX_PAIRS; i++)
		if (p->pairs[i])
			pair_free(p, i, 0);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	close(p->lfd);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}
