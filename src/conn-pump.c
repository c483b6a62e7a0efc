/* SPDX-License-Identifier: MIT */
/* The bytes after the handshake: decrypted records to the target, the
 * target's bytes to the client, half-closes passed on, backpressure. */

#include "bufpool.h"
#include "conn-internal.h"
#include "util.h"

/* Gives the buffer back once its bytes are out (or the connection ends). */
void pipe_release(ConnServer *s, Pipe *p) {
        if (p->packet) {
                gnutls_packet_deinit(p->packet);
                p->packet = NULL;
        } else if (p->big)
                free(p->buf);
        else
                bufpool_put(&s->bufpool, p->buf);
        p->buf = NULL;
        p->big = false;
        p->off = p->len = 0;
}

/* --- piping -------------------------------------------------------------- */

/* Returns >0 on progress, 0 when blocked, <0 when the connection must end. */
int pipe_read_tls(Conn *c) {
        Pipe *p = &c->c2t;
        ssize_t n;

        if (p->eof || p->len > 0)
                return 0;
        if (c->c2t_has_deferred) {
                n = c->c2t_deferred;
                c->c2t_has_deferred = false;
        } else {
                /* The decrypted record itself, not a copy of it: it is passed
                 * on as it is, and freed once written (pipe_release()). */
                n = gnutls_record_recv_packet(c->session, &p->packet);
                c->recv_wants_write = false;
        }
        if (n > 0) {
                gnutls_datum_t d;
                gnutls_packet_get(p->packet, &d, NULL);
                p->buf = d.data;
                p->off = 0;
                p->len = d.size;
                p->bytes += d.size;
                /* Whatever else already came goes out in the same write. */
                while (c->n_c2t_next < ELEMENTSOF(c->c2t_next)) {
                        gnutls_packet_t next = NULL;
                        n = gnutls_record_recv_packet(c->session, &next);
                        if (n <= 0) {
                                if (next)
                                        gnutls_packet_deinit(next);
                                if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) &&
                                    !c->client_fin)
                                        c->recv_wants_write =
                                                gnutls_record_get_direction(c->session) == 1;
                                else {
                                        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                                                n = GNUTLS_E_PREMATURE_TERMINATION;
                                        c->c2t_deferred = n;
                                        c->c2t_has_deferred = true;
                                }
                                break;
                        }
                        gnutls_packet_get(next, &d, NULL);
                        p->bytes += d.size;
                        c->c2t_next[c->n_c2t_next++] = next;
                }
                return 1;
        }
        pipe_release(c->server, p);     /* an empty c2t holds nothing */
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && c->client_fin)
                n = GNUTLS_E_PREMATURE_TERMINATION;     /* all before the FIN is read */
        if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
                /* close_notify, or a TCP FIN without one (conn_pull()): the
                 * client is done sending; pass the end on as a half-close
                 * and go on sending it what the target says. */
                conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: client ended its side (%s)", c->id_str,
                         n == 0 ? "close_notify" : "TCP FIN without close_notify");
                p->eof = true;
                return 1;
        }
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                c->recv_wants_write = gnutls_record_get_direction(c->session) == 1;
                return 0;
        }
        if (n == GNUTLS_E_REHANDSHAKE) {
                /* A TLS 1.2 renegotiation could swap the client certificate
                 * under the authorization we made: refuse it. */
                if (!conn_quiet(c, QUIET_CONN_ERRS))
                        conn_log(c, LOG_WARNING, 0, NULL,
                                 "closing connection from %s: client attempted renegotiation",
                                 c->peer);
                return -EPROTO;
        }
        if (!gnutls_error_is_fatal((int) n))
                return 1;
        if (!conn_quiet(c, QUIET_CONN_ERRS))
                conn_log(c, LOG_INFO, 0, NULL, "error reading from client %s: %s", c->peer,
                         gnutls_strerror((int) n));
        return -EIO;
}

static int pipe_write_target(Conn *c) {
        Pipe *p = &c->c2t;
        ssize_t n;

        if (p->off < p->len) {
                struct iovec iov[C2T_BATCH];
                struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 1 };
                size_t done;

                iov[0] = (struct iovec) { p->buf + p->off, p->len - p->off };
                for (unsigned i = 0; i < c->n_c2t_next; i++) {
                        gnutls_datum_t d;
                        gnutls_packet_get(c->c2t_next[i], &d, NULL);
                        iov[mh.msg_iovlen++] = (struct iovec) { d.data, d.size };
                }
                n = sendmsg(c->target_fd, &mh, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        if (!conn_quiet(c, QUIET_CONN_ERRS)) {
                                char e[ERRNO_GO_MAX];

                                conn_log(c, LOG_INFO, errno, NULL,
                                         "error writing to target %s for %s: %s",
                                         c->server->config->target.spec, c->peer,
                                         errno_go(errno, e, sizeof e));
                        }
                        return -errno;
                }
                /* Whole records written are freed; the first one left over
                 * takes the pipe's place. */
                for (done = (size_t) n;;) {
                        gnutls_datum_t d;

                        if (done < p->len - p->off) {
                                p->off += done;
                                break;
                        }
                        done -= p->len - p->off;
                        pipe_release(c->server, p);
                        if (c->n_c2t_next == 0)
                                break;
                        p->packet = c->c2t_next[0];
                        memmove(c->c2t_next, c->c2t_next + 1,
                                --c->n_c2t_next * sizeof c->c2t_next[0]);
                        gnutls_packet_get(p->packet, &d, NULL);
                        p->buf = d.data;
                        p->off = 0;
                        p->len = d.size;
                }
                return 1;
        }
        if (p->eof && !p->shut) {
                (void) shutdown(c->target_fd, SHUT_WR);
                p->shut = true;
                return 1;
        }
        return 0;
}

static int pipe_read_target(Conn *c) {
        Pipe *p = &c->t2c;
        ssize_t n;
        int error;

        if (p->eof || p->len > 0)
                return 0;
        if (!p->buf && !(p->buf = bufpool_get(&c->server->bufpool)))
                return log_oom();
        n = recv(c->target_fd, p->buf, PIPE_BUFFER_SIZE, 0);
        if (n > 0) {
                p->off = 0;
                p->len = (size_t) n;
                p->bytes += (uint64_t) n;
                return 1;
        }
        error = errno;
        pipe_release(c->server, p);     /* nothing came: hold no buffer while waiting */
        if (n == 0) {
                p->eof = true;
                return 1;
        }
        if (error == EAGAIN || error == EINTR)
                return 0;
        if (!conn_quiet(c, QUIET_CONN_ERRS)) {
                char e[ERRNO_GO_MAX];

                conn_log(c, LOG_INFO, error, NULL, "error reading from target %s for %s: %s",
                         c->server->config->target.spec, c->peer, errno_go(error, e, sizeof e));
        }
        return -error;
}

static int pipe_write_tls(Conn *c) {
        Pipe *p = &c->t2c;
        ssize_t n;

        if (p->off < p->len) {
                /* After GNUTLS_E_AGAIN the same data must be offered again,
                 * which it is: off only moves on success. */
                c->send_more = p->len - p->off > gnutls_record_get_max_size(c->session);
                n = gnutls_record_send(c->session, p->buf + p->off, p->len - p->off);
                c->send_more = false;
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        c->send_blocked = true;
                        return 0;
                }
                c->send_blocked = false;
                if (n < 0) {
                        if (!conn_quiet(c, QUIET_CONN_ERRS))
                                conn_log(c, LOG_INFO, 0, NULL, "error writing to client %s: %s",
                                         c->peer, gnutls_strerror((int) n));
                        return -EIO;
                }
                p->off += (size_t) n;
                if (p->off == p->len)
                        pipe_release(c->server, p);
                return 1;
        }
        if (p->eof && !p->shut) {
                /* close_notify, keeping the TCP connection open for the other
                 * direction. */
                n = gnutls_bye(c->session, GNUTLS_SHUT_WR);
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        c->send_blocked = true;
                        return 0;
                }
                c->send_blocked = false;
                p->shut = true;
                if (n < 0)
                        return -EIO;
                return 1;
        }
        return 0;
}

static int conn_update_events(Conn *c) {
        uint32_t ev = 0, tev = 0;
        int r;

        if ((!c->c2t.eof && c->c2t.len == 0) && !c->recv_wants_write)
                ev |= EPOLLIN;
        if (c->send_blocked || c->recv_wants_write)
                ev |= EPOLLOUT;
        if (!c->t2c.eof && c->t2c.len == 0)
                tev |= EPOLLIN;
        if (c->c2t.off < c->c2t.len)
                tev |= EPOLLOUT;

        /* A source with no events would still report EPOLLHUP and spin. */
        if (ev) {
                r = sd_event_source_set_io_events(c->io, ev | EPOLLET);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->io, SD_EVENT_ON);
        } else
                r = sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        if (r < 0)
                return r;
        if (tev) {
                r = sd_event_source_set_io_events(c->target_io, tev | EPOLLET);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->target_io, SD_EVENT_ON);
        } else
                r = sd_event_source_set_enabled(c->target_io, SD_EVENT_OFF);
        return r;
}

static int on_resume(sd_event_source *s, void *userdata) {
        conn_step(userdata);
        return 0;
}

/* A pump that still had work when it used up its rounds continues on the
 * next loop iteration, after other connections had their turn: no epoll
 * event would wake it, since nothing it waits for is blocked. */
int conn_schedule_resume(Conn *c) {
        int r;

        if (c->resume)
                return sd_event_source_set_enabled(c->resume, SD_EVENT_ONESHOT);
        r = sd_event_add_defer(c->server->event, &c->resume, on_resume, c);
        if (r >= 0)
                (void) sd_event_source_set_description(c->resume, "conn-resume");
        return r;
}

void conn_pump(Conn *c) {
        const Config *cfg = c->server->config;
        bool was_half_closed = c->c2t.shut || c->t2c.shut, moved = false;
        unsigned i;
        int r;

        for (i = 0; i < PUMP_ROUNDS_MAX; i++) {
                int progress = 0;

                /* Write before read: a buffer is refilled only once empty. */
                r = pipe_write_target(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;
                r = pipe_write_tls(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;
                r = pipe_read_tls(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;
                r = pipe_read_target(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;

                if (progress == 0)
                        break;
                moved = true;
        }

        if (c->c2t.shut && c->t2c.shut)
                return conn_close(c);

        if (c->c2t.shut || c->t2c.shut) {
                /* One direction ended: the other may idle for --close-timeout
                 * (0: close at once). The timer restarts whenever bytes move,
                 * so that it ends connections nobody uses any more, never a
                 * transfer still under way (a reply streamed after the
                 * client's end may take much longer than the timeout). */
                if (cfg->close_timeout == 0)
                        return conn_close(c);
                if ((!was_half_closed || moved) && conn_arm_deadline(c, cfg->close_timeout) < 0)
                        return conn_close(c);
        }

        if (conn_update_events(c) < 0 || (i == PUMP_ROUNDS_MAX && conn_schedule_resume(c) < 0))
                conn_close(c);
}
